"""The acquisition context: where each value comes from, refusal of bad values with NAK BAD_VALUE
(10) on the wire, acquisition facts per source, study sessions, and routing by the modality an
object actually carries."""

import json
import unittest

import support
from ingest_fakes import frame, parse_responses
from modgate.acquire import Acquirer
from modgate.compat import ticks_add, ticks_ms
from modgate.config import Config
from modgate.contexts import Contexts, check_source_facts
from modgate.dicom import uids
from modgate.dicom.dsreader import read_meta
from modgate.errors import ConfigError, FrameError
from modgate.ingest import frameproto as fp
from modgate.port import fs
from modgate.spool.queue import Spool


class Device:
    """What Contexts asks of the device facade: config, board, serial, UIDs, the clock note."""

    def __init__(self, folder):
        self.config = Config(fs.join(folder, "config.json")).load()
        self.board = {"id": "test-board", "name": "Test Board"}
        self.serial = "77"
        self.uid_gen = uids.UidGenerator("1.2.826.0.1.3680043.10.1", "77", 1)
        self.clock_notes = 0

    def note_clock_unset(self):
        self.clock_notes += 1

    def worklist(self):
        return None  # no worklist SCP configured (test_worklist.py covers the worklist)

    def study_started(self, context, now):
        return None  # no MPPS SCP configured (test_mpps.py covers the procedure steps)


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("ctx")
        self.addCleanup(support.remove_tree, self.dir)
        self.device = Device(self.dir)
        self.contexts = Contexts(self.device)


class TestSources(Base):
    def test_precedence_settings_facts_console_frame(self):
        cfg = self.device.config
        cfg.set("default_patient_name", "DEFAULT^NAME")
        cfg.set("modality", "XA")
        cfg.set("timezone", "+0100")
        cfg.set("source_facts", '{"uart": {"burned_in_annotation": "YES", "modality": "ES"},'
                                ' "tcp:10.0.0.5": {"frame_time_ms": "40"}}')
        tcp = self.contexts.for_acquisition(None, "tcp:10.0.0.9:4000")
        self.assertEqual((tcp["patient_name"], tcp["modality"], tcp["conversion_type"]),
                         ("DEFAULT^NAME", "XA", "DI"))
        self.assertNotIn("burned_in_annotation", tcp)  # unknown for TCP sources: not made up
        self.assertNotIn("frame_time_ms", tcp)
        self.assertEqual(tcp["tz"], "+0100")
        self.assertEqual(tcp["model_name"], "test-board")  # the board's id: its name may exceed LO
        self.assertEqual(self.contexts.for_acquisition(None, "tcp:10.0.0.5:4001")["frame_time_ms"], "40")
        uart = self.contexts.for_acquisition(None, "uart:/dev/ttyS1")
        self.assertEqual((uart["burned_in_annotation"], uart["modality"]), ("YES", "ES"))
        pattern = self.contexts.for_acquisition(None, "testpattern")
        self.assertEqual((pattern["conversion_type"], pattern["burned_in_annotation"]), ("SYN", "NO"))
        self.contexts.pending_patient = {"patient_name": "CONSOLE^NAME", "patient_id": "C1"}
        console = self.contexts.for_acquisition(None, "uart:/dev/ttyS1")
        self.assertEqual((console["patient_name"], console["patient_id"]), ("CONSOLE^NAME", "C1"))
        given = self.contexts.for_acquisition({"patient_name": "FRAME^NAME", "modality": "US",
                                               "shoe_size": "bad values of unknown keys are ignored"},
                                              "uart:/dev/ttyS1")
        self.assertEqual((given["patient_name"], given["patient_id"], given["modality"]),
                         ("FRAME^NAME", "C1", "US"))
        self.assertNotIn("shoe_size", given)

    def test_every_fact_and_field_is_a_frame_context_member(self):
        from modgate import contexts
        from modgate.dicom import vr

        self.assertEqual(contexts.HEADER_CONTEXT_KEYS[-len(contexts.FACT_KEYS):], contexts.FACT_KEYS)
        for key in contexts.HEADER_CONTEXT_KEYS:
            self.assertIsNotNone(vr.field_vr(key), key)

    def test_bad_frame_values_are_refused_with_bad_value(self):
        for ctx, reason in (({"patient_sex": "male"}, "patient_sex: must be M, F or O"),
                            ({"patient_id": "ID\\1"}, "patient_id: backslash not allowed"),
                            ({"accession_number": "A" * 17}, "accession_number: longer than 16 bytes"),
                            ({"study_instance_uid": "1.2.3.04.abc"}, "study_instance_uid: UID"),
                            ({"patient_birth_date": "19991301"}, "patient_birth_date: not a calendar date"),
                            ({"patient_name": 42}, "patient_name: expected text"),
                            ({"frame_time_ms": "0"}, "frame_time_ms: must be greater than 0")):
            with self.assertRaises(FrameError) as cm:
                self.contexts.for_acquisition(ctx, "tcp:1.2.3.4:5")
            self.assertEqual(cm.exception.code, fp.NAK_BAD_VALUE)
            self.assertTrue(str(cm.exception).startswith(reason), str(cm.exception))
        self.assertIsNone(self.contexts.study_uid, "a refused frame opens no study")

    def test_source_facts_setting_is_checked(self):
        cfg = self.device.config
        for text, reason in (('{"serial": {}}', "unknown source"),
                             ('{"uart": {"burned_in": "NO"}}', "unknown fact"),
                             ('{"uart": {"burned_in_annotation": "no"}}', "YES or NO"),
                             ('{"file:x": {}}', "unknown source"),
                             ('{"uart": "YES"}', "expected an object"),
                             ("[1]", "expected a JSON object"),
                             ("nope", "expected a JSON object")):
            with self.assertRaises(ConfigError) as cm:
                cfg.set("source_facts", text)
            self.assertIn(reason, str(cm.exception))
            self.assertTrue(str(cm.exception).startswith("source_facts: "))
        self.assertEqual(check_source_facts({"tcp:10.1.1.1": {"laterality": "L"}}),
                         {"tcp:10.1.1.1": {"laterality": "L"}})
        self.assertEqual(cfg.get("source_facts"), {})

    def test_settings_that_go_into_objects_are_checked_like_them(self):
        cfg = self.device.config
        self.assertEqual(cfg.set("patient_orientation", "A\\F"), "A\\F")
        for key, value, reason in (("patient_orientation", "A", "2 values"),
                                   ("modality", "XX", "defined term"),
                                   ("station_name", "S" * 17, "16"),
                                   ("default_patient_id", "a\\b", "backslash"),
                                   ("timezone", "+0160", "offset"),
                                   ("default_patient_birth_date", "20230229", "calendar")):
            with self.assertRaises(ConfigError) as cm:
                cfg.set(key, value)
            self.assertIn(reason, str(cm.exception))


class TestStudies(Base):
    def study(self, ctx=None):
        c = self.contexts.for_acquisition(ctx, "tcp:1.2.3.4:5")
        return c["study_instance_uid"], c["study_started"]

    def test_one_session_keeps_uid_date_and_time(self):
        first = self.study()
        self.assertEqual(self.study(), first)
        self.assertEqual(self.study({"study_description": "more of the same"}), first)

    def test_what_starts_a_new_study(self):
        first = self.study()
        second = self.study({"patient_id": "P2"})  # another patient
        self.assertNotEqual(second[0], first[0])
        self.assertEqual(self.study({"patient_id": "P2"})[0], second[0])
        self.contexts.new_study()  # console `study new`
        third = self.study({"patient_id": "P2"})
        self.assertNotEqual(third[0], second[0])
        named = self.study({"patient_id": "P2", "study_instance_uid": "1.2.3.9"})
        self.assertEqual(named[0], "1.2.3.9")
        # Frames naming the same study keep its date and time, whatever else they say.
        self.assertEqual(self.study({"patient_id": "P3", "study_instance_uid": "1.2.3.9"}), named)

    def test_a_gap_longer_than_the_timeout_starts_a_new_study(self):
        self.device.config.set("study_timeout_s", "60")
        first = self.study()
        self.contexts.last_ticks = ticks_add(ticks_ms(), -59000)
        self.assertEqual(self.study()[0], first[0])
        self.contexts.last_ticks = ticks_add(ticks_ms(), -61000)
        self.assertNotEqual(self.study()[0], first[0])
        self.device.config.set("study_timeout_s", "0")  # never
        kept = self.study()
        self.contexts.last_ticks = ticks_add(ticks_ms(), -1000000)
        self.assertEqual(self.study(), kept)


class TestFrameToObject(Base):
    """A frame through the receiver into the acquirer with the real context provider."""

    def setUp(self):
        Base.setUp(self)
        settings = support.settings(Spool.SETTINGS, spool_budget_bytes=1 << 24,
                                    routing=[{"dest": "dx-only", "modality": "DX"}])
        self.spool = Spool(fs.join(self.dir, "spool"), settings, destinations=["all", "dx-only"])
        self.spool.recover()
        facts = {"burned_in_annotation": "NO", "laterality": "U", "pixel_spacing": "0.1\\0.1"}
        self.device.config.set("source_facts", json.dumps({"tcp": facts}))
        self.device.config.set("patient_orientation", "A\\F")

    def receive(self, iod, context, seq=1):
        self.device.config.set("modality", "OT")  # what an SC object of this source would carry
        settings = support.settings(Acquirer.SETTINGS, grouping="frame", iod=iod)
        sink = Acquirer(self.spool, self.device.uid_gen, self.contexts, settings)
        rx = fp.FrameReceiver(sink, "tcp:10.0.0.1:40000")
        blob = frame(seq, bytes(range(15)), 5, 3, context=json.dumps(context).encode() if context else b"")
        buf = bytearray(blob)
        rx.feed(buf, 0, len(buf))
        return parse_responses(rx.outbox)[0]

    def test_a_bad_value_is_nak_bad_value_and_nothing_is_stored(self):
        kind, reason, seq, _, text = self.receive("sc", {"patient_sex": "male"})
        self.assertEqual((kind, reason, seq), (fp.NAK, fp.NAK_BAD_VALUE, 1))
        self.assertEqual(text, "patient_sex: must be M, F or O")
        self.assertEqual(self.spool.list(10), [])
        self.assertEqual(fp.NAK_NAMES[fp.NAK_BAD_VALUE], "BAD_VALUE")

    def test_routing_sees_the_modality_written(self):
        kind, _, _, _, dx_uid = self.receive("dx", {"patient_id": "P1"})
        self.assertEqual(kind, fp.ACK)
        kind, _, _, _, sc_uid = self.receive("sc", {"patient_id": "P1"}, 2)
        self.assertEqual(kind, fp.ACK)
        pending = {}
        for entry in self.spool.list(10):
            with fs.open_file(self.spool.data_path(entry["id"]), "rb") as f:
                pending[read_meta(f)["sop_instance_uid"]] = entry["pending"]
        # The rule "modality": "DX" matches the DX object, whose configured modality was OT.
        self.assertEqual(pending, {dx_uid: ["all", "dx-only"], sc_uid: ["all"]})


if __name__ == "__main__":
    unittest.main()
