"""The device facade: identity, context for acquisitions, settings applied without a reboot."""

import unittest

import support
from modgate.device import Device
from modgate.dicom.dsreader import read_meta
from modgate.port import fs


def ports(state_dir):
    return {"board": {"id": "test", "name": "Test board"}, "state_dir": state_dir}


class TestDevice(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("device")
        self.addCleanup(support.remove_tree, self.dir)
        self.device = Device(ports(self.dir))

    def stored_uids(self):
        out = []
        for entry in self.device.spool.list(100):
            with fs.open_file(self.device.spool.data_path(entry["id"]), "rb") as f:
                out.append(read_meta(f)["sop_instance_uid"])
        return out

    def test_boot_counts_up_and_serial_is_kept(self):
        serial = self.device.serial
        again = Device(ports(self.dir))
        self.assertEqual(again.boot_count, self.device.boot_count + 1)
        self.assertEqual(again.serial, serial)

    def test_applying_settings_never_repeats_a_uid(self):
        before = [self.device.uid_gen.new() for _ in range(5)]
        self.device.apply_config()  # same root and serial: the sequence must not start again
        after = [self.device.uid_gen.new() for _ in range(5)]
        self.assertEqual(len(set(before + after)), 10)
        first = self.device.send_test_pattern()
        self.device.apply_config()
        second = self.device.send_test_pattern()
        self.device.config.set("uid_root", "1.2.826.0.1")
        self.device.apply_config()
        third = self.device.send_test_pattern()
        self.assertEqual(len({first, second, third}), 3)
        self.assertTrue(third.startswith("1.2.826.0.1."))
        self.assertEqual(sorted(self.stored_uids()), sorted([first, second, third]))

    def test_console_patient_fields_and_frame_context_reach_the_context(self):
        self.device.next_patient({"name": "DOE^JANE", "id": "P7", "accession": "A1"})
        self.assertEqual(self.device.pending_patient()["name"], "DOE^JANE")
        context = self.device.contexts.for_acquisition(
            {"series_description": "cine", "device_serial": "FORGED", "patient_id": "P8"}
        )
        self.assertEqual(context["patient_name"], "DOE^JANE")
        self.assertEqual(context["accession_number"], "A1")
        self.assertEqual(context["patient_id"], "P8")  # the frame's own context wins
        self.assertEqual(context["series_description"], "cine")
        self.assertEqual(context["device_serial"], self.device.serial)  # identity is the device's

    def test_a_new_patient_starts_a_new_study(self):
        study = self.device.contexts.for_acquisition(None)["study_instance_uid"]
        self.assertEqual(self.device.contexts.for_acquisition(None)["study_instance_uid"], study)
        self.device.next_patient({"name": "ROE^RICHARD"})
        self.assertNotEqual(self.device.contexts.for_acquisition(None)["study_instance_uid"], study)

    def test_destinations_change_without_a_reboot(self):
        self.device.add_destination("pacs2", "PACS2", "127.0.0.1", 11113)
        self.assertEqual(self.device.spool.destinations, ["archive", "pacs2"])
        self.device.remove_destination("archive")
        self.assertEqual(self.device.spool.destinations, ["pacs2"])
        self.assertEqual(self.device.status()["destinations"], ["pacs2"])


class TestBadSavedSettings(unittest.TestCase):
    def test_a_bad_saved_value_boots_with_its_default_and_status_says_so(self):
        folder = support.scratch_dir("badcfg")
        self.addCleanup(support.remove_tree, folder)
        fs.write_atomic(fs.join(folder, "config.json"), b'{"spool_low_pct": 95, "ae_title": "GOOD"}')
        device = Device(ports(folder))  # must not raise: a device that cannot boot cannot be fixed
        status = device.status()
        self.assertEqual(device.config.get("ae_title"), "GOOD")
        self.assertTrue(any("spool_low_pct" in text for text in status["config_fallbacks"]), status)
        self.assertEqual(status["series_closing"], 0)
