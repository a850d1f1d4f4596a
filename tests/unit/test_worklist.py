"""The worklist on the device (modgate.worklist, modgate.dicom.mwl), on every runtime: the query
it asks, items decoded from identifiers into the flash cache (what a FindSession feeds its sink), the cache
surviving a reboot and a failed refresh, selection, and the way an item reaches the acquisition
context and the object (modgate.contexts, modgate.dicom.writer). The network side runs against
real SCPs in tests/e2e/test_worklist*.py."""

import binascii
import io
import json
import struct
import unittest

import support
from modgate import worklist as wl
from modgate.compat import ticks_add, ticks_ms
from modgate.config import Config
from modgate.contexts import Contexts
from modgate.dicom import dataset, mwl, part10, pixels, uids
from modgate.dicom.writer import ObjectWriter
from modgate.errors import DecodeError, FrameError, ModgateError
from modgate.ingest.frameproto import NAK_WORKLIST
from modgate.port import aio, clock, fs


def identifier(n, name=b"Doe^John", charset_value=b"", sex=b"M", explicit=True, extra_sps=False,
               step=b"Chest two views"):
    """A worklist item as an SCP answers it, built element by element (not by our encoder)."""

    def el(tag, vr, value):
        if len(value) & 1:
            value += b"\x00" if vr == "UI" else b" "
        if not explicit:
            return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value
        if vr == "SQ":
            return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, b"SQ", 0, len(value)) + value
        return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value

    def item(body):
        return struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body

    code = item(
        el(0x00080100, "SH", b"P%d" % n) + el(0x00080102, "SH", b"LOCAL") + el(0x00080104, "LO", b"Chest PA")
    )
    sps = (
        el(0x00080060, "CS", b"OT")
        + el(0x00400001, "AE", b"MODGATE")
        + el(0x00400002, "DA", b"20260705")
        + el(0x00400003, "TM", b"0930")
        + el(0x00400007, "LO", step)
        + el(0x00400008, "SQ", code)
        + el(0x00400009, "SH", b"SPS%d" % n)
    )
    study = item(el(0x00081150, "UI", b"1.2.840.10008.3.1.2.3.1") + el(0x00081155, "UI", b"1.2.3.9.%d" % n))
    out = b""
    if charset_value:
        out += el(0x00080005, "CS", charset_value)
    out += (
        el(0x00080050, "SH", b"ACC%d" % n)
        + el(0x00080090, "PN", b"Who^Doc")
        + el(0x00081110, "SQ", study)
        + el(0x00100010, "PN", name)
        + el(0x00100020, "LO", b"PID%d" % n)
        + el(0x00100030, "DA", b"19800101")
        + el(0x00100040, "CS", sex)
        + el(0x0020000D, "UI", b"1.2.3.4.%d" % n)
        + el(0x00321060, "LO", b"XR chest")
        + el(0x00400100, "SQ", item(sps) + (item(sps) if extra_sps else b""))
        + el(0x00401001, "SH", b"RP%d" % n)
    )
    return out


class Device:
    """What the worklist and the context provider ask of the device facade."""

    def __init__(self, folder):
        self.state_dir = folder
        self.config = Config(fs.join(folder, "config.json")).load()
        self.config.set("worklist_scp", "RIS@127.0.0.1:104")
        self.online = True
        self.board = {"id": "test-board"}
        self.serial = "77"
        self.uid_gen = uids.UidGenerator("1.2.826.0.1.3680043.10.1", "77", 1)
        self._worklist = wl.Worklist(self)

    def worklist(self):
        return self._worklist if self.config.get("worklist_scp") else None

    def study_started(self, context, now):
        return None  # no MPPS SCP configured

    def network_settings(self):
        return {"calling_aet": "MODGATE", "max_pdu": 4096}

    def task_bound_ms(self):
        return 50000

    def note_clock_unset(self):
        pass

    def settle_heap(self):
        pass


def fill(worklist, identifiers, explicit=True, chunk=7, age_s=0):
    """Feed identifiers to a refresh's sink as a FindSession would (in fragments), then commit."""
    staging = wl._Staging(worklist.folder)
    staging.begin(explicit)
    skipped = 0
    for data in identifiers:
        mv = memoryview(data)
        for i in range(0, len(data), chunk):
            staging.write(mv[i : i + chunk])
        try:
            staging.end_match()
        except DecodeError:
            skipped += 1
    header = {
        "refreshed": clock.epoch_seconds() - age_s,
        "utc": "2026-07-05T08:00:00Z",
        "items": staging.count,
        "skipped": staging.skipped,
        "cancelled": False,
        "scp": worklist.scp(),
        "explicit": explicit,
        "took_ms": 5,
    }
    staging.commit(header, worklist.path)
    return skipped


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("wl")
        self.addCleanup(support.remove_tree, self.dir)
        self.saved_clock = clock._offset_s
        self.addCleanup(self._restore_clock)
        clock.set_time(2026, 7, 5, 8, 0, 0)
        self.device = Device(self.dir)
        self.worklist = self.device._worklist

    def _restore_clock(self):
        clock._offset_s = self.saved_clock


class TestQuery(Base):
    def test_keys_ask_every_return_key_and_match_three(self):
        keys = mwl.query_keys("MODGATE", "US", "20260705")
        tags = [t for t, _, _ in keys]
        self.assertEqual(tags, sorted(tags))
        out = bytearray()
        dataset.encode(out, keys, True)
        got = dataset.read(io.BytesIO(bytes(out)), len(out), True, mwl.wanted())
        rec = mwl.record(got)
        for key in rec:
            if key not in ("station_aet", "modality", "scheduled_date", "charset"):
                self.assertIn(rec[key], ("", []), key)
        self.assertEqual(
            (rec["station_aet"], rec["modality"], rec["scheduled_date"]), ("MODGATE", "US", "20260705")
        )
        # The empty code sequences are universal matches: their items come back whole.
        self.assertEqual(got[0x00400100][0][0x00400008], [])
        self.assertEqual(got[0x00321064], [])

    def test_dates_from_the_setting_in_local_time(self):
        clock.set_time(2026, 7, 5, 23, 30, 0)  # UTC; 01:30 on the 6th at +0200
        self.assertEqual(wl.query_date("today", 0), "20260705")
        self.assertEqual(wl.query_date("today", 120), "20260706")
        self.assertEqual(wl.query_date("today-1..today+1", 0), "20260704-20260706")
        self.assertEqual(wl.query_date("today..today", 0), "20260705")
        self.assertEqual(wl.query_date("20260101..20260131", 0), "20260101-20260131")
        self.assertEqual(wl.query_date("*", 0), "")
        clock.set_time(2001, 1, 1, 0, 0, 0)
        with self.assertRaises(ModgateError):
            wl.query_date("today", 0)  # an unset clock has no today
        self.assertEqual(wl.query_date("20260705", 0), "20260705")

    def test_the_station_setting_defaults_to_our_ae_title(self):
        keys = self.worklist._query()
        sps = [v for t, _, v in keys if t == mwl.SPS_SEQUENCE][0][0]
        self.assertIn((0x00400001, "AE", "MODGATE"), sps)
        self.device.config.set("worklist_station_aet", "*")
        sps = [v for t, _, v in self.worklist._query() if t == mwl.SPS_SEQUENCE][0][0]
        self.assertIn((0x00400001, "AE", ""), sps)  # universal


class TestItems(Base):
    def test_an_item_decoded_from_latin1(self):
        fill(self.worklist, [identifier(1, b"M\xfcller^J\xfcrgen", b"ISO_IR 100")])
        rec = self.worklist.item(1)
        self.assertEqual(rec["patient_name"], "Müller^Jürgen")
        self.assertEqual(rec["study_instance_uid"], "1.2.3.4.1")  # its NUL pad gone
        self.assertEqual(rec["scheduled_protocol_codes"], [["P1", "LOCAL", "", "Chest PA"]])
        self.assertEqual(rec["referenced_studies"], [["1.2.840.10008.3.1.2.3.1", "1.2.3.9.1"]])
        self.assertEqual(
            (rec["scheduled_step_id"], rec["scheduled_time"], rec["charset"]), ("SPS1", "0930", "ISO_IR 100")
        )
        self.assertNotIn("escaped", rec)
        self.assertIsNone(mwl.problem(rec))

    def test_implicit_vr_items_and_fragmented_arrival(self):
        fill(self.worklist, [identifier(i, explicit=False) for i in range(1, 4)], explicit=False, chunk=3)
        self.assertEqual([r["accession"] for r in self.worklist.rows()], ["ACC1", "ACC2", "ACC3"])
        self.assertEqual(self.worklist.item(3)["requested_procedure_id"], "RP3")

    def test_an_undecodable_item_is_listed_escaped_and_cannot_be_selected(self):
        jis = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"
        fill(self.worklist, [identifier(1, jis, b"\\ISO 2022 IR 87")])
        row = self.worklist.rows()[0]
        self.assertEqual(row["note"], "escaped")
        self.assertIn("\\x1b", row["patient_name"])
        with self.assertRaises(ModgateError) as caught:
            self.worklist.select(1)
        self.assertIn("ISO 2022 IR 87", str(caught.exception))

    def test_a_malformed_match_is_skipped_and_the_rest_kept(self):
        skipped = fill(self.worklist, [identifier(1), identifier(2)[:-5], identifier(3)])
        self.assertEqual(skipped, 1)
        self.assertEqual(self.worklist.count(), 2)
        self.assertEqual(self.worklist.header()["skipped"], 1)
        self.assertEqual([r["n"] for r in self.worklist.rows()], [1, 2])

    def test_paging_find_and_more_than_one_step(self):
        fill(self.worklist, [identifier(i, extra_sps=(i == 5)) for i in range(1, 31)])
        self.assertEqual(len(self.worklist.rows()), wl.LIST_PAGE)
        self.assertEqual([r["n"] for r in self.worklist.rows(21)], list(range(21, 31)))
        self.assertEqual(self.worklist.find("accession_number", "ACC17")["n"], 17)
        self.assertEqual(self.worklist.find("scheduled_step_id", "SPS30")["patient_id"], "PID30")
        self.assertIsNone(self.worklist.find("accession_number", "ACC1 "))
        self.assertEqual(self.worklist.item(5)["steps"], 2)
        with self.assertRaises(ModgateError):
            self.worklist.item(31)

    def test_a_value_objects_would_refuse_makes_the_item_unselectable(self):
        fill(self.worklist, [identifier(1, sex=b"X")])
        with self.assertRaises(ModgateError) as caught:
            self.worklist.select(1)
        self.assertIn("patient_sex", str(caught.exception))


class TestCache(Base):
    def test_the_cache_and_the_selection_survive_a_reboot(self):
        fill(self.worklist, [identifier(1), identifier(2)])
        self.worklist.select(2)
        again = wl.Worklist(self.device)
        self.assertEqual(again.count(), 2)
        self.assertEqual(again.selected()["accession_number"], "ACC2")
        self.assertEqual([r["selected"] for r in again.rows()], [False, True])
        status = again.status()
        self.assertEqual((status["items"], status["age_s"], status["stale"]), (2, 0, False))
        self.assertEqual(status["selected"]["n"], 2)
        self.assertTrue(again.clear())
        self.assertFalse(wl.Worklist(self.device).clear())  # nothing selected after the clear

    def test_the_dicom_code_is_unloaded_after_a_selection_and_a_named_item(self):
        # Between uses the worklist's DICOM side gives its heap back (a 96 KB board's frame
        # links need it); the selection works from flash without it.
        import sys

        fill(self.worklist, [identifier(1), identifier(2)])
        for name in wl.DICOM_MODULES:
            __import__(name)
        self.worklist.select(2)
        self.assertEqual([n for n in wl.DICOM_MODULES if n in sys.modules], [])
        contexts = Contexts(self.device)
        self.assertEqual(contexts.for_acquisition({}, "tcp:1")["accession_number"], "ACC2")
        named = contexts.for_acquisition({"scheduled_step_id": "SPS1"}, "tcp:1")
        self.assertEqual(named["accession_number"], "ACC1")
        self.assertEqual([n for n in wl.DICOM_MODULES if n in sys.modules], [])
        # Loaded again when needed: the next selection decodes as the first did.
        self.assertEqual(self.worklist.select(1)["accession_number"], "ACC1")

    def test_an_abandoned_refresh_leaves_the_cache_and_nothing_behind(self):
        fill(self.worklist, [identifier(1)])
        staging = wl._Staging(self.worklist.folder)
        staging.write(memoryview(identifier(9)))
        staging.end_match()
        staging.abandon()
        self.assertEqual(sorted(fs.listdir(self.worklist.folder)), ["items.jsonl"])
        self.assertEqual(wl.Worklist(self.device).item(1)["accession_number"], "ACC1")

    def test_leftovers_of_a_refresh_cut_by_a_reset_are_removed(self):
        fs.write_atomic(fs.join(self.worklist.folder, "new.jsonl"), b"half")
        fs.write_atomic(fs.join(self.worklist.folder, "new.raw"), b"half")
        self.assertIsNone(wl.Worklist(self.device).header())
        self.assertEqual(fs.listdir(self.worklist.folder), [])

    def test_age_and_staleness(self):
        fill(self.worklist, [identifier(1)], age_s=4000)
        self.assertTrue(self.worklist.status()["stale"])  # worklist_stale_s 1800 by default
        self.assertEqual(self.worklist.status()["age_s"], 4000)
        clock.set_time(2001, 1, 1, 0, 0, 0)
        self.assertEqual((self.worklist.status()["age_s"], self.worklist.status()["stale"]), (None, True))

    def test_when_a_refresh_is_due(self):
        cfg = self.device.config
        self.assertTrue(self.worklist._due())  # never refreshed
        fill(self.worklist, [identifier(1)])
        self.assertFalse(wl.Worklist(self.device)._due())  # a fresh list from before the reboot
        fill(self.worklist, [identifier(1)], age_s=400)
        self.assertTrue(wl.Worklist(self.device)._due())  # older than the period (300 s) by now
        self.worklist.refreshed_at = ticks_ms()
        self.assertFalse(self.worklist._due())
        self.worklist.refreshed_at = ticks_add(ticks_ms(), -301000)
        self.assertTrue(self.worklist._due())
        cfg.set("worklist_refresh_s", "0")
        self.assertFalse(self.worklist._due())  # manual only
        self.worklist.requested = True
        self.assertTrue(self.worklist._due())

    def test_refresh_now_needs_an_scp_and_the_network(self):
        self.device.online = False
        with self.assertRaises(ModgateError):
            support.run(self.worklist.refresh_now(100))
        self.device.online = True
        self.device.config.set("worklist_scp", "")
        with self.assertRaises(ModgateError):
            support.run(self.worklist.refresh_now(100))

    def test_refresh_now_waits_for_the_task_and_reports_its_failure(self):
        async def both():
            task = aio.create_task(self.worklist.run(lambda: None))
            try:
                return await self.worklist.refresh_now(20000)
            finally:
                task.cancel()

        self.device.config.set("worklist_scp", "RIS@127.0.0.1:1")  # nobody listens there
        self.device.config.set("connect_timeout_ms", "500")
        with self.assertRaises(ModgateError) as caught:
            support.run(both())
        self.assertIn("cached items kept", str(caught.exception))
        self.assertFalse(self.worklist.running)


class TestIntoObjects(Base):
    def setUp(self):
        Base.setUp(self)
        fill(self.worklist, [identifier(1, "Müller^Zoë".encode(), b"ISO_IR 192"), identifier(2)])
        self.contexts = Contexts(self.device)

    def test_the_selected_item_gives_patient_study_and_request(self):
        self.worklist.select(1)
        ctx = self.contexts.for_acquisition({"series_description": "from the frame"}, "tcp:1.2.3.4:5")
        for key, value in (
            ("patient_name", "Müller^Zoë"),
            ("patient_id", "PID1"),
            ("accession_number", "ACC1"),
            ("study_instance_uid", "1.2.3.4.1"),
            ("study_description", "XR chest"),
            ("study_id", "RP1"),
            ("referring_physician", "Who^Doc"),
            ("series_description", "from the frame"),
        ):
            self.assertEqual(ctx[key], value, key)
        request = mwl.sequences_of(self.worklist.item(1))["request_attributes"][0]
        self.assertEqual([t for t, _, _ in request], sorted(t for t, _, _ in request))
        self.assertIn((0x00400009, "SH", "SPS1"), request)
        self.assertIn((0x00401001, "SH", "RP1"), request)
        # The context carries the items encoded (base64 of Explicit VR LE): small, and JSON.
        out = bytearray()
        dataset.encode_items(out, [request], True)
        self.assertEqual(binascii.a2b_base64(ctx["request_attributes"]), bytes(out))
        self.assertEqual(json.loads(json.dumps(ctx["request_attributes"])), ctx["request_attributes"])

    def test_a_frame_names_its_item_or_gets_nak_worklist(self):
        ctx = self.contexts.for_acquisition({"scheduled_step_id": "SPS2"}, "tcp:1.2.3.4:5")
        self.assertEqual((ctx["patient_id"], ctx["study_instance_uid"]), ("PID2", "1.2.3.4.2"))
        ctx = self.contexts.for_acquisition({"accession_number": "ACC1"}, "tcp:1.2.3.4:5")
        self.assertEqual(ctx["patient_id"], "PID1")
        with self.assertRaises(FrameError) as caught:
            self.contexts.for_acquisition({"accession_number": "ACC404"}, "tcp:1.2.3.4:5")
        self.assertEqual(caught.exception.code, NAK_WORKLIST)
        self.assertIn("ACC404", str(caught.exception))
        # A frame that names its own patient is not matched against the worklist.
        ctx = self.contexts.for_acquisition(
            {"accession_number": "ACC404", "patient_id": "X"}, "tcp:1.2.3.4:5"
        )
        self.assertEqual((ctx["accession_number"], ctx["patient_id"]), ("ACC404", "X"))
        self.assertNotIn("request_attributes", ctx)

    def test_without_a_worklist_a_step_id_is_refused_and_an_accession_is_a_value(self):
        self.device.config.set("worklist_scp", "")
        with self.assertRaises(FrameError) as caught:
            self.contexts.for_acquisition({"scheduled_step_id": "SPS2"}, "tcp:1.2.3.4:5")
        self.assertEqual(caught.exception.code, NAK_WORKLIST)
        self.assertEqual(
            self.contexts.for_acquisition({"accession_number": "A9"}, "")["accession_number"], "A9"
        )

    def test_the_selection_ends_with_the_study(self):
        self.worklist.select(2)
        self.assertEqual(self.contexts.for_acquisition(None, "")["patient_id"], "PID2")
        self.contexts.new_study()
        self.assertIsNone(self.worklist.selected())
        self.assertEqual(self.contexts.for_acquisition(None, "")["patient_id"], "")
        self.worklist.select(2)
        self.contexts.for_acquisition(None, "")
        self.contexts.last_ticks = ticks_add(ticks_ms(), -1801000)  # study_timeout_s is 1800
        self.worklist.selected_ticks = ticks_add(ticks_ms(), -1900000)
        ctx = self.contexts.for_acquisition(None, "")
        self.assertEqual(ctx["patient_id"], "")
        self.assertIsNone(self.worklist.selected())

    def test_a_selection_made_after_a_long_pause_holds(self):
        self.contexts.for_acquisition(None, "")
        self.contexts.last_ticks = ticks_add(ticks_ms(), -3600000)  # the last exam, an hour ago
        self.worklist.select(1)
        self.assertEqual(self.contexts.for_acquisition(None, "")["patient_id"], "PID1")

    def write(self, n):
        self.worklist.select(n)
        ctx = self.contexts.for_acquisition(None, "tcp:1.2.3.4:5")
        ctx["series_instance_uid"] = "1.2.3.5"
        lay = pixels.layout("GRAY8", 4, 2)
        out = io.BytesIO()
        w = ObjectWriter(out, "sc", lay, ctx, uids.UidGenerator("1.2.826.0.1.3680043.10.1", "7", 1))
        w.begin()
        w.write_pixels(bytes(8))
        w.end_frame()
        w.finish()
        return out.getvalue()

    def test_specific_character_set_follows_the_text_in_the_sequences_too(self):
        latin1 = identifier(2, step=b"R\xf6ntgen Thorax", charset_value=b"ISO_IR 100")
        fill(self.worklist, [identifier(1), latin1])
        self.assertNotIn(b"ISO_IR 192", self.write(1))  # all ASCII: the default repertoire
        data = self.write(2)  # only the step description is not ASCII
        self.assertIn(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 192", data)
        self.assertIn("Röntgen Thorax".encode(), data)

    def test_the_object_carries_the_sequences(self):
        data = self.write(1)
        for syntax in (part10.EXPLICIT_VR_LE, part10.IMPLICIT_VR_LE):
            f = io.BytesIO(data)
            reader = part10.DatasetReader(f, part10.read_meta(f), syntax)
            body = bytearray(reader.length())
            reader.readinto(memoryview(body))
            code = {0x00080100: True, 0x00080104: True}
            request = {0x00400009: True, 0x00401001: True, 0x00400008: code}
            got = dataset.read(
                io.BytesIO(bytes(body)),
                len(body),
                syntax == part10.EXPLICIT_VR_LE,
                {
                    0x00080005: True,
                    0x00100010: True,
                    0x00400275: request,
                    0x00400260: code,
                    0x00081110: {0x00081155: True},
                    0x00081032: code,
                },
            )
            self.assertEqual(got[0x00080005], b"ISO_IR 192")
            self.assertEqual(got[0x00100010], "Müller^Zoë".encode())  # 12 bytes: no pad
            self.assertEqual(
                got[0x00400275],
                [
                    {
                        0x00400009: b"SPS1",
                        0x00401001: b"RP1 ",
                        0x00400008: [{0x00080100: b"P1", 0x00080104: b"Chest PA"}],
                    }
                ],
            )
            self.assertEqual(got[0x00400260], [{0x00080100: b"P1", 0x00080104: b"Chest PA"}])
            self.assertEqual(got[0x00081110], [{0x00081155: b"1.2.3.9.1\x00"}])
            self.assertNotIn(0x00081032, got)  # the item has no requested procedure code


if __name__ == "__main__":
    unittest.main()
