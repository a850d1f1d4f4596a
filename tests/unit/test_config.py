"""Configuration: schema shape, validators, atomic save/load, corrupt files, PIN hashing."""

import json
import unittest

import support
from modgate import config, log
from modgate.config import Config
from modgate.errors import ConfigError
from modgate.port import fs


class TestSchema(unittest.TestCase):
    def test_every_key_is_lower_snake_case_with_a_description(self):
        seen = []
        for key, kind, _default, _limit, flags, text in config.SCHEMA:
            self.assertNotIn(key, seen)
            seen.append(key)
            for ch in key:
                self.assertTrue(ch.islower() or ch.isdigit() or ch == "_", key)
            self.assertTrue(len(text) > 5, key)

    def test_required_keys_exist(self):
        for key in (
            "device_serial",
            "station_name",
            "institution_name",
            "ae_title",
            "uid_root",
            "max_pdu",
            "connect_timeout_ms",
            "acse_timeout_ms",
            "dimse_timeout_ms",
            "idle_timeout_ms",
            "frames_port",
            "frames_max_bytes",
            "frames_idle_timeout_ms",
            "grouping",
            "series_timeout_ms",
            "iod",
            "modality",
            "retry_base_ms",
            "retry_max_ms",
            "retry_max_attempts",
            "retry_max_age_s",
            "spool_budget_bytes",
            "spool_high_pct",
            "spool_low_pct",
            "dead_max_items",
            "filedrop_dir",
            "filedrop_enabled",
            "console_json",
            "pin_hash",
            "routing",
            "destinations",
        ):
            self.assertIn(key, config.keys())

    def test_defaults_pass_their_own_validation(self):
        conf = Config("/nonexistent/cfg.json")
        for key in config.keys():
            if key == "pin_hash":
                continue
            value = conf.get(key)
            self.assertEqual(config._parse(config.entry(key), value), value)

    def test_secrets_are_the_pin_and_the_dicom_passcode(self):
        secrets = [e[0] for e in config.SCHEMA if e[4] & config.SECRET]
        self.assertEqual(secrets, ["user_passcode", "pin_hash"])


class TestValidators(unittest.TestCase):
    def setUp(self):
        self.conf = Config("/nonexistent/cfg.json")

    def bad(self, key, value, fragment):
        with self.assertRaises(ConfigError) as ctx:
            self.conf.set(key, value)
        self.assertIn(key, str(ctx.exception))
        self.assertIn(fragment, str(ctx.exception))

    def test_ae_title(self):
        self.assertEqual(self.conf.set("ae_title", " CT_ROOM1 "), "CT_ROOM1")
        self.bad("ae_title", "", "1 to 16")
        self.bad("ae_title", "    ", "all spaces")
        self.bad("ae_title", "A" * 17, "1 to 16")
        self.bad("ae_title", "A\\B", "backslash")
        self.bad("ae_title", "A\tB", "control")

    def test_uid_root(self):
        self.assertEqual(self.conf.set("uid_root", "1.2.826.0.1.3680043"), "1.2.826.0.1.3680043")
        self.bad("uid_root", "1.2.03", "leading zero")
        self.bad("uid_root", "1..2", "digits separated")
        self.bad("uid_root", "1.2.a", "digits separated")
        self.bad("uid_root", "1.2.3.", "digits separated")
        self.bad("uid_root", "1." + "2" * 23, "longer than 24")
        self.bad("uid_root", "5.1", "start with 0, 1 or 2")

    def test_host_and_port(self):
        self.assertEqual(config.validate_host("192.168.1.20"), "192.168.1.20")
        self.assertEqual(config.validate_host("pacs-01.hospital.example"), "pacs-01.hospital.example")
        for bad in ("256.1.1.1", "-pacs", "pa_cs", "a..b", "", "1.2.3.4.5"):
            with self.assertRaises(ConfigError):
                config.validate_host(bad)
        self.assertEqual(self.conf.set("frames_port", "104"), 104)
        self.bad("frames_port", "0", "1-65535")
        self.bad("frames_port", "65536", "1-65535")
        self.bad("frames_port", "http", "whole number")

    def test_numbers_choices_and_bools(self):
        self.assertEqual(self.conf.set("max_pdu", "32768"), 32768)
        self.bad("max_pdu", "100", "4096-131072")
        self.assertEqual(self.conf.set("iod", "dx"), "dx")
        self.bad("iod", "ct", "one of")
        self.assertEqual(self.conf.set("console_json", "on"), True)
        self.assertEqual(self.conf.set("console_json", "off"), False)
        self.bad("console_json", "maybe", "on/off")
        self.bad("modality", "ot", "code string")
        self.bad("default_patient_birth_date", "19701301", "YYYYMMDD")
        self.bad("filedrop_dir", "../etc", "..")

    def test_cross_field_watermarks(self):
        self.bad("spool_low_pct", "95", "below spool_high_pct")
        self.conf.set("spool_low_pct", "50")
        self.bad("spool_high_pct", "40", "above spool_low_pct")
        self.bad("spool_high_pct", "50", "above spool_low_pct")
        self.assertEqual(self.conf.set("spool_low_pct", "0"), 0)  # accept again only when empty
        self.bad("retry_max_ms", "500", "at least retry_base_ms")
        self.bad("retry_base_ms", "400000", "at most retry_max_ms")

    def test_every_rule_names_schema_keys_and_the_defaults_keep_it(self):
        for key, relation, other in config.RULES:
            config.entry(key)
            config.entry(other)
            self.assertIn(relation, ("<", "<="))
        config.view(config.keys())  # raises when a default breaks a rule

    def test_destinations_json_list(self):
        value = self.conf.set(
            "destinations", '[{"name": "pacs", "aet": "PACS", "host": "10.1.1.1", "port": 104}]'
        )
        self.assertEqual(value, [{"name": "pacs", "aet": "PACS", "host": "10.1.1.1", "port": 104}])
        self.bad("destinations", "[{}]", "lacks")
        self.bad("destinations", "not json", "JSON list")
        two = '[{"name":"a","aet":"A","host":"h","port":1},{"name":"a","aet":"B","host":"h","port":2}]'
        self.bad("destinations", two, "used twice")

    def test_unknown_key(self):
        with self.assertRaises(ConfigError) as ctx:
            self.conf.set("AE_Title", "X")
        self.assertIn("unknown key 'AE_Title'", str(ctx.exception))


class TestFile(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("config")
        self.addCleanup(support.remove_tree, self.dir)
        self.path = fs.join(self.dir, "config.json")

    def test_missing_file_gives_defaults(self):
        conf = Config(self.path).load()
        self.assertEqual(conf.get("ae_title"), "MODGATE")
        self.assertFalse(conf.dirty)

    def test_board_defaults_replace_defaults_not_saved_values(self):
        """board.json "config_defaults" (a small max PDU on a 64 KB heap); a bad one is ignored."""
        conf = Config(self.path, {"max_pdu": 4096, "log_level": "loud"}).load()
        self.assertEqual(conf.get("max_pdu"), 4096)
        self.assertEqual(conf.get("log_level"), config.default("log_level"))
        conf.set("max_pdu", "8192")
        conf.save()
        again = Config(self.path, {"max_pdu": 4096}).load()
        self.assertEqual(again.get("max_pdu"), 8192)

    def test_save_load_round_trip_and_dirty(self):
        conf = Config(self.path).load()
        conf.set("ae_title", "ROOM2")
        conf.set("frames_port", "7000")
        self.assertTrue(conf.dirty)
        conf.save()
        self.assertFalse(conf.dirty)
        self.assertEqual(fs.listdir(self.dir), ["config.json"])  # no temp file left behind
        again = Config(self.path).load()
        self.assertEqual(again.get("ae_title"), "ROOM2")
        self.assertEqual(again.get("frames_port"), 7000)

    def test_corrupt_file_gives_defaults(self):
        for junk in (b"{not json", b"[1, 2]", b"", b"\xff\xfe\x00"):
            fs.write_atomic(self.path, junk)
            conf = Config(self.path).load()
            self.assertEqual(conf.get("ae_title"), "MODGATE")

    def test_bad_values_fall_back_per_key(self):
        data = {"ae_title": "A\\B", "frames_port": 7001, "max_pdu": "huge", "bogus": 1, "pin_hash": "plain"}
        fs.write_atomic(self.path, json.dumps(data).encode())
        conf = Config(self.path).load()
        self.assertEqual(conf.get("ae_title"), "MODGATE")
        self.assertEqual(conf.get("frames_port"), 7001)
        self.assertEqual(conf.get("max_pdu"), config.default("max_pdu"))
        self.assertFalse(conf.has_pin())

    def test_reset_keeps_pin(self):
        conf = Config(self.path).load()
        conf.set("pin", "123456")
        conf.set("ae_title", "X1")
        conf.reset()
        self.assertEqual(conf.get("ae_title"), "MODGATE")
        self.assertTrue(conf.check_pin("123456"))

    def test_get_returns_a_copy_of_lists(self):
        conf = Config(self.path).load()
        conf.get("destinations").append({"name": "x"})
        self.assertEqual(len(conf.get("destinations")), 1)


class TestLoadNeverStopsBoot(unittest.TestCase):
    """A saved configuration that fails validation: defaults for the bad keys, each logged and
    listed in load_errors, and the device boots."""

    def setUp(self):
        self.dir = support.scratch_dir("config-load")
        self.addCleanup(support.remove_tree, self.dir)
        self.path = fs.join(self.dir, "config.json")

    def save(self, data):
        fs.write_atomic(self.path, json.dumps(data).encode())

    def test_broken_rule_gives_both_keys_their_defaults(self):
        self.save({"spool_low_pct": 95, "spool_high_pct": 90, "ae_title": "ROOM3"})
        conf = Config(self.path).load()
        self.assertEqual((conf.get("spool_low_pct"), conf.get("spool_high_pct")), (75, 90))
        self.assertEqual(conf.get("ae_title"), "ROOM3")
        self.assertEqual(len(conf.load_errors), 1)
        self.assertIn("spool_low_pct: must be below spool_high_pct", conf.load_errors[0])
        self.assertTrue(any("saved configuration: spool_low_pct" in line for line in log.tail(5)))

    def test_each_bad_value_is_listed(self):
        self.save({"spool_low_pct": -3, "max_pdu": "huge", "iod": "ct", "frames_port": 7001})
        conf = Config(self.path).load()
        self.assertEqual(len(conf.load_errors), 3)
        bad = sorted(e.split(":")[0] for e in conf.load_errors)
        self.assertEqual(bad, ["iod", "max_pdu", "spool_low_pct"])
        self.assertEqual(conf.get("frames_port"), 7001)

    def test_half_written_file_and_leftover_temp_file(self):
        conf = Config(self.path).load()
        conf.set("ae_title", "ROOM4")
        conf.save()
        with open(self.path + ".tmp", "w") as f:
            f.write('{"ae_title": "ROO')  # a save cut short: the old file is whole
        conf = Config(self.path).load()
        self.assertEqual(conf.get("ae_title"), "ROOM4")
        self.assertEqual(conf.load_errors, [])
        self.assertEqual(fs.listdir(self.dir), ["config.json"])
        with open(self.path, "w") as f:
            f.write('{"ae_title": "ROO')  # the file itself cut (media damage)
        conf = Config(self.path).load()
        self.assertEqual(conf.get("ae_title"), "MODGATE")
        self.assertEqual(len(conf.load_errors), 1)
        self.assertIn("unreadable", conf.load_errors[0])

    def test_board_defaults_that_break_a_rule_are_ignored(self):
        conf = Config(self.path, {"spool_high_pct": 60, "max_pdu": 8192}).load()
        self.assertEqual(conf.get("spool_high_pct"), 90)
        self.assertEqual(conf.get("max_pdu"), 8192)

    def test_device_boots_on_a_configuration_the_spool_used_to_refuse(self):
        from modgate.device import Device

        self.save({"spool_low_pct": 0})  # valid: the spool takes what the schema allows
        device = Device({"board": {"id": "test"}, "state_dir": self.dir})
        self.assertEqual(device.spool.low, 0)
        self.save({"spool_low_pct": 95, "spool_high_pct": 91})
        device = Device({"board": {"id": "test"}, "state_dir": self.dir})
        self.assertEqual(device.spool.low, device.spool.budget * 75 // 100)
        self.assertEqual(len(device.config.load_errors), 1)


class TestSettingsViews(unittest.TestCase):
    def test_a_view_holds_every_key_asked_for(self):
        conf = Config("/nonexistent/cfg.json", {"spool_max_items": 32})
        conf.set("spool_budget_bytes", "1000000")
        view = conf.settings(("spool_budget_bytes", "spool_max_items", "dead_policy"))
        want = {"spool_budget_bytes": 1000000, "spool_max_items": 32, "dead_policy": "drop-oldest"}
        self.assertEqual(view, want)
        view["spool_max_items"] = 1  # a snapshot: changing it changes no setting
        self.assertEqual(conf.get("spool_max_items"), 32)

    def test_view_without_a_config_validates_its_overrides(self):
        keys = ("spool_low_pct", "spool_high_pct")
        view = config.view(keys, {"spool_low_pct": "10"})
        self.assertEqual(view, {"spool_low_pct": 10, "spool_high_pct": 90})
        for bad in ({"spool_low_pct": 95}, {"spool_low_pct": "x"}, {"iod": "sc"}):
            with self.assertRaises(ConfigError):
                config.view(keys, bad)

    def test_layers_read_only_schema_keys(self):
        from modgate.acquire import Acquirer
        from modgate.spool.queue import Spool

        for keys in (Spool.SETTINGS, Acquirer.SETTINGS):
            self.assertEqual(sorted(config.view(keys)), sorted(keys))


class TestPin(unittest.TestCase):
    def test_hash_salted_never_plain_and_checks(self):
        conf = Config("/nonexistent/cfg.json")
        conf.set("pin", "2468")
        stored = conf.get("pin_hash")
        self.assertNotIn("2468", stored.split("$")[2])
        self.assertTrue(stored.startswith("sha256$"))
        self.assertTrue(conf.check_pin("2468"))
        self.assertFalse(conf.check_pin("2469"))
        self.assertFalse(conf.check_pin(""))
        other = Config("/nonexistent/cfg.json")
        other.set("pin", "2468")
        self.assertNotEqual(other.get("pin_hash"), stored)  # salted

    def test_pin_rules_and_masking(self):
        conf = Config("/nonexistent/cfg.json")
        for bad in ("123", "1234567890123", "12a4", ""):
            if bad == "":
                continue
            with self.assertRaises(ConfigError):
                conf.set("pin", bad)
        conf.set("pin", "9999")
        self.assertEqual(dict(conf.items())["pin_hash"], "***")
        self.assertNotIn("9999", str(conf.items()))


class TestOneSourceOfDefaults(unittest.TestCase):
    """Layers that keep a fallback for callers without settings (tests, host jobs) keep the
    schema's value: the schema is the one source of defaults."""

    def test_layer_fallbacks_equal_the_schema(self):
        from modgate.ingest.link import MAX_FRAME_BYTES
        from modgate.ingest.tcp import FRAMES_PORT
        from modgate.spool.forwarder import DEFAULT_POLICY

        self.assertEqual(DEFAULT_POLICY["base_backoff_ms"], config.default("retry_base_ms"))
        self.assertEqual(DEFAULT_POLICY["max_backoff_ms"], config.default("retry_max_ms"))
        self.assertEqual(DEFAULT_POLICY["max_attempts"], config.default("retry_max_attempts"))
        self.assertEqual(DEFAULT_POLICY["max_age_s"], config.default("retry_max_age_s"))
        self.assertEqual(MAX_FRAME_BYTES, config.default("frames_max_bytes"))
        self.assertEqual(FRAMES_PORT, config.default("frames_port"))
