"""The acquisition sink: frames into durable spool objects, series into one multi-frame object."""

import json
import unittest

import dcmcheck
import faultfs
import support
from modgate.acquire import Acquirer, stable_source
from modgate.compat import ticks_add, ticks_ms
from modgate.dicom import uids
from modgate.dicom.dsreader import read_meta
from modgate.errors import FrameError, SpoolFull
from modgate.ingest.frameproto import NAK_REFUSED, NAK_SERIES, NAK_TOO_LARGE
from modgate.port import fs
from modgate.spool.queue import Spool


def header(kind="single", width=5, height=3, fmt="GRAY8", series_id=0, index=0, payload=None, source="test",
           sequence=None):
    size = width * height * (2 if fmt == "GRAY16" else 1)
    return {
        "version": 1,
        "kind": kind,
        "sequence": index if sequence is None else sequence,
        "series_id": series_id,
        "frame_index": index,
        "width": width,
        "height": height,
        "pixel_format": fmt,
        "bits_stored": None,
        "payload_length": size if payload is None else payload,
        "context": None,
        "source": source,
    }


def make_spool(root, budget, **settings):
    spool = Spool(root, support.settings(Spool.SETTINGS, spool_budget_bytes=budget, **settings),
                  destinations=["archive"])
    spool.recover()
    return spool


class TestAcquirer(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("acq")
        self.addCleanup(support.remove_tree, self.dir)
        self.spool = make_spool(fs.join(self.dir, "spool"), 1 << 24)
        self.uid_gen = uids.UidGenerator("1.2.3", "7", 1)
        self.sink = self.make_sink()

    def make_sink(self, **settings):
        view = support.settings(Acquirer.SETTINGS, **settings)
        return Acquirer(self.spool, self.uid_gen, support.Contexts(self.uid_gen), view)

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

    def test_a_series_frame_whose_start_was_never_stored_is_refused(self):
        # A start that failed (or was lost) leaves no context: the series must be sent again.
        with self.assertRaises(FrameError) as caught:
            self.sink.begin_frame(header("series_frame", series_id=6, index=1))
        self.assertEqual(caught.exception.code, NAK_SERIES)
        self.assertIn("series start", str(caught.exception))
        self.assertEqual(self.sink.open_series, {})

    def test_geometry_change_inside_a_series_is_refused(self):
        self.send(header("series_start", series_id=3), b"\x02" * 15)
        with self.assertRaises(FrameError) as caught:
            self.sink.begin_frame(header("series_frame", series_id=3, index=1, width=6))
        self.assertEqual(caught.exception.code, NAK_SERIES)

    def test_unsupported_combination_is_refused_with_a_reason(self):
        sink = self.make_sink(iod="us")
        with self.assertRaises(FrameError) as caught:
            sink.begin_frame(header(fmt="GRAY16"))
        self.assertEqual(caught.exception.code, NAK_REFUSED)
        self.assertEqual(self.stored(), {})

    def test_dx_takes_patient_orientation_from_the_context(self):
        contexts = support.Contexts(self.uid_gen)
        plain = contexts.for_acquisition

        contexts.for_acquisition = lambda extra, source: dict(
            plain(extra), patient_orientation="A\\F", pixel_spacing="0.1\\0.1", laterality="U")
        sink = Acquirer(self.spool, self.uid_gen, contexts, support.settings(Acquirer.SETTINGS, iod="dx"))
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

    def test_series_times_out_and_delivers_what_arrived(self):
        sink = self.make_sink(series_timeout_ms=0)
        target = sink.begin_frame(header("series_start", series_id=6))
        target.write(memoryview(b"\x03" * 15))
        uid = sink.commit_frame(target)
        sink.source_lost("test")
        sink.tick()
        self.assertEqual(list(self.stored()), [uid])

    def test_full_spool_answers_busy(self):
        spool = make_spool(fs.join(self.dir, "small"), 8192, spool_high_pct=50, spool_low_pct=25)
        view = support.settings(Acquirer.SETTINGS)
        sink = Acquirer(spool, self.uid_gen, support.Contexts(self.uid_gen), view)
        with self.assertRaises(SpoolFull):
            for i in range(10):
                target = sink.begin_frame(header(width=40, height=40))
                target.write(memoryview(b"\x01" * 1600))
                sink.commit_frame(target)
        self.assertEqual(fs.listdir(fs.join(self.dir, "small/in")), [])  # no partial object left


class TestSeriesOnFlash(unittest.TestCase):
    """A series is one open spool object from its first frame to its commit, across restarts."""

    FRAME = 15  # 5x3 GRAY8

    def setUp(self):
        self.dir = support.scratch_dir("series")
        self.addCleanup(support.remove_tree, self.dir)
        self.addCleanup(faultfs.uninstall)
        self.uid_gen = uids.UidGenerator("1.2.3", "7", 1)
        self.boot()

    def boot(self, budget=1 << 24, **settings):
        """Power on: a new spool and sink on the same flash, both recovered."""
        if getattr(self, "sink", None) is not None:
            for series in list(self.sink.open_series.values()) + self.sink.closing:
                series.drop_writer()  # the power cut closes every file
        self.spool = make_spool(fs.join(self.dir, "spool"), budget)
        self.sink = Acquirer(self.spool, self.uid_gen, support.Contexts(self.uid_gen),
                             support.settings(Acquirer.SETTINGS, **settings))
        self.sink.recover()

    def send(self, hdr, fill):
        target = self.sink.begin_frame(hdr)
        target.write(memoryview(bytes([fill]) * hdr["payload_length"]))
        return self.sink.commit_frame(target)

    def frame(self, kind, index, source="tcp:10.0.0.5:40001", series_id=3, sequence=None):
        return header(kind, series_id=series_id, index=index, source=source,
                      sequence=100 + index if sequence is None else sequence)

    def objects(self):
        """[(uid, frames, pixels)] of the committed objects, each checked for structure."""
        return [dcmcheck.read_object(self.spool.data_path(e["id"]), self.FRAME) for e in self.spool.list(100)]

    def in_files(self):
        return fs.listdir(fs.join(self.dir, "spool/in"))

    def test_frames_go_into_one_open_object_counted_in_the_budget(self):
        uid = self.send(self.frame("series_start", 0), 1)
        self.send(self.frame("series_frame", 1), 2)
        self.assertEqual(self.in_files(), ["o1.json", "o1.open"])
        size = fs.size(fs.join(self.dir, "spool/in/o1.open"))
        self.assertEqual(self.spool.used_bytes(), size)
        self.assertEqual(self.objects(), [])
        self.send(self.frame("series_end", 2), 3)
        self.assertEqual(self.objects(), [(uid, 3, b"\x01" * 15 + b"\x02" * 15 + b"\x03" * 15)])
        self.assertEqual(self.in_files(), [])
        self.assertEqual(fs.listdir(self.dir), ["spool"])  # no staging folder beside the spool
        self.assertEqual(self.sink.frames_acked, 3)

    def test_series_goes_on_in_the_same_object_after_a_restart(self):
        uid = self.send(self.frame("series_start", 0), 1)
        self.send(self.frame("series_frame", 1), 2)
        self.boot()
        self.assertEqual(list(self.sink.open_series), ["tcp:10.0.0.5:3"])
        # The modality reconnects (a new ephemeral port) and goes on where it stopped.
        self.assertEqual(self.send(self.frame("series_frame", 2, source="tcp:10.0.0.5:40999"), 3), uid)
        self.assertEqual(self.send(self.frame("series_end", 3, source="tcp:10.0.0.5:40999"), 4), uid)
        self.assertEqual(self.objects(), [(uid, 4, b"".join(bytes([i]) * 15 for i in (1, 2, 3, 4)))])

    def test_recovered_series_is_committed_after_the_timeout(self):
        uid = self.send(self.frame("series_start", 0), 1)
        self.send(self.frame("series_frame", 1), 2)
        self.boot(series_timeout_ms=60000)
        self.sink.tick()
        self.assertEqual(self.objects(), [])  # the source has a full timeout from boot
        self.sink.tick(ticks_add(ticks_ms(), 60001))
        self.assertEqual(self.objects(), [(uid, 2, b"\x01" * 15 + b"\x02" * 15)])
        self.assertEqual(self.in_files(), [])

    def test_torn_frame_is_overwritten_by_the_resent_one(self):
        uid = self.send(self.frame("series_start", 0), 1)
        target = self.sink.begin_frame(self.frame("series_frame", 1))
        target.write(memoryview(b"\x07" * 9))
        target.series.writer.flush()  # the power goes with part of frame 1 on flash, not acknowledged
        self.boot()
        self.assertEqual(self.sink.open_series["tcp:10.0.0.5:3"].frames, 1)
        self.send(self.frame("series_frame", 1), 2)
        self.send(self.frame("series_end", 2), 3)
        self.assertEqual(self.objects(), [(uid, 3, b"\x01" * 15 + b"\x02" * 15 + b"\x03" * 15)])

    def test_torn_tail_is_cut_at_the_commit(self):
        uid = self.send(self.frame("series_start", 0), 1)
        target = self.sink.begin_frame(self.frame("series_frame", 1))
        target.write(memoryview(b"\x07" * 9))
        target.series.writer.flush()
        self.boot(series_timeout_ms=0)
        self.sink.tick()
        # One frame: Frame Increment Pointer and Frame Time dropped in place (dcmcheck checks it).
        self.assertEqual(self.objects(), [(uid, 1, b"\x01" * 15)])

    def test_whole_but_unacknowledged_frame_is_kept_and_its_resend_acked_again(self):
        uid = self.send(self.frame("series_start", 0), 1)
        self.send(self.frame("series_frame", 1), 2)  # on flash; say its ACK was lost in the power cut
        self.boot()
        self.assertEqual(self.send(self.frame("series_frame", 1), 2), uid)  # the modality resends it
        self.assertEqual(self.send(self.frame("series_end", 2), 3), uid)
        self.assertEqual(self.objects(), [(uid, 3, b"\x01" * 15 + b"\x02" * 15 + b"\x03" * 15)])
        self.assertEqual(self.sink.frames_acked, 1)  # this boot stored only frame 2

    def test_resent_series_start_is_not_a_new_series(self):
        uid = self.send(self.frame("series_start", 0), 1)
        self.boot()
        self.assertEqual(self.send(self.frame("series_start", 0), 1), uid)
        self.send(self.frame("series_end", 1), 2)
        self.assertEqual(self.objects(), [(uid, 2, b"\x01" * 15 + b"\x02" * 15)])

    def test_series_start_with_a_new_sequence_closes_the_earlier_series(self):
        first = self.send(self.frame("series_start", 0), 1)
        second = self.send(self.frame("series_start", 0, sequence=500), 2)
        self.assertNotEqual(first, second)
        self.assertEqual(self.objects(), [(first, 1, b"\x01" * 15)])

    def test_a_missing_frame_is_refused(self):
        self.send(self.frame("series_start", 0), 1)
        with self.assertRaises(FrameError) as caught:
            self.sink.begin_frame(self.frame("series_frame", 2))
        self.assertEqual(caught.exception.code, NAK_SERIES)
        self.assertIn("1 expected", str(caught.exception))

    def test_resend_of_the_last_frame_after_the_close_is_acked_again(self):
        uid = self.send(self.frame("series_start", 0), 1)
        self.send(self.frame("series_end", 1), 2)
        self.assertEqual(self.send(self.frame("series_end", 1), 2), uid)
        bare = self.frame("series_end", 2)
        bare["payload_length"] = 0
        target = self.sink.begin_frame(bare)
        self.assertEqual(self.sink.commit_frame(target), uid)
        self.assertEqual(len(self.objects()), 1)

    def test_resends_after_a_restart_are_recognised_from_the_commit_tags(self):
        """The power went after a commit and before its ACK left: the source resends."""
        single = self.send(header(source="tcp:10.0.0.9:5000", sequence=77), 9)
        series = self.send(self.frame("series_start", 0), 1)
        self.send(self.frame("series_end", 1), 2)
        self.boot()
        self.assertEqual(self.send(header(source="tcp:10.0.0.9:5001", sequence=77), 9), single)
        self.assertEqual(self.send(self.frame("series_end", 1), 2), series)
        self.assertEqual(len(self.objects()), 2)
        self.assertEqual(self.sink.frames_acked, 0)
        # The same sequence with other pixels is another frame (a source that counts again).
        self.assertNotEqual(self.send(header(source="tcp:10.0.0.9:5002", sequence=77), 8), single)
        self.assertEqual(len(self.objects()), 3)

    def test_only_resending_sources_are_deduplicated(self):
        first = self.send(header(source="testpattern", sequence=0), 5)
        # Commissioning twice: two acquisitions.
        self.assertNotEqual(self.send(header(source="testpattern", sequence=0), 5), first)
        dropped = self.send(header(source="file:a.raw", sequence=0), 6)
        self.boot()  # the power went before the file drop removed a.raw: it is read again
        self.assertEqual(self.send(header(source="file:a.raw", sequence=0), 6), dropped)
        self.assertEqual(len(self.objects()), 3)

    def test_a_series_longer_than_its_object_takes_goes_on_in_the_next_instance(self):
        import modgate.acquire as acquire

        self.addCleanup(setattr, acquire, "SERIES_MAX_FRAMES", acquire.SERIES_MAX_FRAMES)
        acquire.SERIES_MAX_FRAMES = 2  # the Frame Time Vector reserved for two frames
        first = self.send(self.frame("series_start", 0), 1)
        self.send(self.frame("series_frame", 1), 2)
        second = self.send(self.frame("series_frame", 2), 3)
        self.assertEqual(self.send(self.frame("series_end", 3), 4), second)
        self.assertNotEqual(first, second)
        got = sorted(self.objects(), key=lambda o: o[2])
        self.assertEqual([(o[1], o[2]) for o in got], [(2, b"\x01" * 15 + b"\x02" * 15),
                                                       (2, b"\x03" * 15 + b"\x04" * 15)])

    def test_frames_after_a_timeout_go_into_the_next_instance_of_the_series(self):
        first = self.send(self.frame("series_start", 0), 1)
        self.sink.tick(ticks_add(ticks_ms(), 3600 * 1000))  # the modality paused past the timeout
        second = self.send(self.frame("series_end", 1), 2)
        self.assertNotEqual(first, second)
        paths = [self.spool.data_path(e["id"]) for e in self.spool.list(5)]
        series_uids = set()
        numbers = []
        for path in paths:
            data = fs.read_bytes(path)
            with fs.open_file(path, "rb") as f:
                found = dcmcheck.elements(data, read_meta(f) and f.tell())
            series_uids.add(found[0x0020000E][1])
            numbers.append(found[0x00200013][1].strip())
        self.assertEqual(len(series_uids), 1)
        self.assertEqual(numbers, [b"1", b"2"])

    def test_failed_commit_is_retried_never_dropped(self):
        """Each operation of a series' commit, failed in turn: the series stays until a retry
        commits it, with all its frames, once."""
        later = ticks_add(ticks_ms(), 10 ** 7)
        n = 0
        while True:
            n += 1
            support.remove_tree(fs.join(self.dir, "spool"))
            self.sink = None
            self.boot()
            uid = self.send(self.frame("series_start", 0), 1)
            self.send(self.frame("series_frame", 1), 2)
            plan = faultfs.install(faultfs.Plan(fail_at=n))
            self.sink.tick(later)  # timed out: closes
            faultfs.uninstall()
            if plan.hit is None:
                break  # every operation of the close has been failed once
            both = [(uid, 2, b"\x01" * 15 + b"\x02" * 15)]
            self.assertEqual(self.objects(), [] if self.sink.closing else both)
            self.sink.tick(ticks_add(later, 1000))  # one second later: tried again
            self.assertEqual(self.sink.closing, [], "operation %d" % n)
            self.assertEqual(self.objects(), both)
            self.boot()  # a note whose removal failed goes at the next boot
            self.assertEqual(self.objects(), both)
            self.assertEqual(self.in_files(), [])
        self.assertGreater(n, 5)

    def test_series_holding_the_spool_full_is_committed_so_it_can_drain(self):
        self.boot(budget=1 << 16)
        self.spool.configure(support.settings(Spool.SETTINGS, spool_budget_bytes=4096 + 600,
                                              spool_high_pct=90, spool_low_pct=50))
        big = header("series_start", width=40, height=10, series_id=4, source="uart")
        sent = 0
        with self.assertRaises(SpoolFull):
            for index in range(20):
                hdr = dict(big, kind="series_start" if index == 0 else "series_frame", frame_index=index,
                           sequence=index)
                target = self.sink.begin_frame(hdr)
                target.write(memoryview(bytes([index]) * 400))
                self.sink.commit_frame(target)
                sent += 1
        self.assertEqual(self.sink.open_series, {})
        [entry] = self.spool.list(5)  # committed: delivery can free it now
        self.spool.mark_done(entry["id"], "archive")
        # The source resends the frame answered BUSY: the next instance of the same series.
        hdr = dict(big, kind="series_end", frame_index=sent, sequence=sent)
        target = self.sink.begin_frame(hdr)
        target.write(memoryview(bytes([sent]) * 400))
        self.sink.commit_frame(target)
        [(uid, frames, pixels)] = [dcmcheck.read_object(self.spool.data_path(e["id"]), 400)
                                   for e in self.spool.list(5)]
        self.assertEqual((frames, pixels), (1, bytes([sent]) * 400))

    def test_frame_larger_than_the_budget_is_refused_not_busy(self):
        self.boot(budget=1 << 16)
        self.spool.configure(support.settings(Spool.SETTINGS, spool_budget_bytes=2000))
        with self.assertRaises(FrameError) as caught:
            self.sink.begin_frame(header("series_start", width=50, height=50, series_id=1))
        self.assertEqual(caught.exception.code, NAK_TOO_LARGE)

    def test_note_that_names_no_series_is_set_aside(self):
        self.send(self.frame("series_start", 0, series_id=1), 1)
        self.send(self.frame("series_start", 0, series_id=2), 2)
        with open(fs.join(self.dir, "spool/in/o1.json"), "w") as f:
            f.write('{"uid": 7}')
        note = json.loads(fs.read_bytes(fs.join(self.dir, "spool/in/o2.json")))
        del note["point"]
        fs.write_atomic(fs.join(self.dir, "spool/in/o2.json"), json.dumps(note).encode())
        self.boot()
        self.assertEqual(self.sink.open_series, {})
        self.assertEqual(self.spool.stats()["unreadable_open"], 2)
        # Kept, not deleted: their frames were acknowledged.
        self.assertEqual(self.in_files(), ["o1.json", "o1.open", "o2.json", "o2.open"])


class TestStableSource(unittest.TestCase):
    def test_tcp_sources_are_known_by_host(self):
        self.assertEqual(stable_source("tcp:10.1.2.3:50123"), "tcp:10.1.2.3")
        self.assertEqual(stable_source("uart"), "uart")
        self.assertEqual(stable_source("file:a.raw"), "file:a.raw")
