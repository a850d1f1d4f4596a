"""Every console command against a FakeDevice, in human and JSON mode, and the PIN rules."""

import json
import unittest

import support
from console_fakes import FakeDevice, Stream
from modgate.compat import sleep_ms
from modgate.console import shell as shell_module
from modgate.console.shell import Console
from modgate.port import fs


class ConsoleCase(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("console")
        self.addCleanup(support.remove_tree, self.dir)
        self.device = FakeDevice(fs.join(self.dir, "config.json"))
        self.out = Stream()
        self.console = Console(self.device, self.out)

    def ask(self, line):
        """Send `line` with --json; return the parsed one-line reply."""
        self.out.take()
        support.run(self.console.feed((line + " --json\r\n").encode()))
        lines = [x for x in self.out.take().split("\r\n") if x.startswith("{")]
        self.assertEqual(len(lines), 1, lines)
        return json.loads(lines[0])

    def ok(self, line):
        reply = self.ask(line)
        self.assertTrue(reply["ok"], reply)
        return reply["data"]

    def refused(self, line, code):
        reply = self.ask(line)
        self.assertFalse(reply["ok"], reply)
        self.assertEqual(reply["code"], code, reply)
        return reply["error"]

    def human(self, line):
        self.out.take()
        support.run(self.console.feed((line + "\r").encode()))
        return self.out.take()

    def provision_pin(self, pin="2468"):
        self.ok("config set pin " + pin)
        self.assertEqual(self.console.privilege_state(), "unlocked")  # the setter keeps working
        self.console.lock()


class TestCommands(ConsoleCase):
    def test_help_lists_every_command(self):
        rows = self.ok("help")
        usages = " ".join(r["usage"] for r in rows)
        for word in (
            "status",
            "config set",
            "dest echo",
            "queue purge",
            "log tail",
            "time set",
            "patient next",
            "ident",
            "test-pattern send",
            "reboot",
            "unlock",
            "json",
        ):
            self.assertIn(word, usages)
        self.assertEqual(len(self.ok("help config")), 5)
        self.refused("help nope", "usage")

    def test_status_and_ident(self):
        status = self.ok("status")
        self.assertEqual(status["queue_depth"], 1)
        self.assertEqual(status["privileged"], "open")
        self.assertFalse(status["config_unsaved"])
        ident = self.ok("ident")
        self.assertEqual(ident["serial"], "FAKE0001")
        self.assertEqual(ident["uid_root"], "2.25")

    def test_config_show_get_set_save_reset(self):
        self.assertEqual(self.ok("config show")["ae_title"], "MODGATE")
        self.assertEqual(self.ok("config get frames_port"), {"key": "frames_port", "value": 5555})
        data = self.ok('config set institution_name "St. Mary Hospital"')
        self.assertEqual(data["value"], "St. Mary Hospital")
        self.assertTrue(self.ok("status")["config_unsaved"])
        self.ok("config save")
        self.assertEqual(
            json.loads(fs.read_bytes(self.device.config.path))["institution_name"], "St. Mary Hospital"
        )
        self.assertEqual(self.device.applied, 1)  # saved settings take effect without a reboot
        self.ok("config reset")
        self.assertEqual(self.ok("config get institution_name")["value"], "")
        self.refused("config get nope", "invalid")
        self.refused("config set ae_title", "usage")
        self.refused("config set ae_title A B", "usage")
        self.assertIn("ae_title", self.refused("config set ae_title " + "X" * 17, "invalid"))

    def test_human_config_output(self):
        text = self.human("config set ae_title ROOM3")
        self.assertIn("ae_title = ROOM3", text)
        self.assertIn("not saved", text)
        self.assertIn("error: unknown command 'frobnicate'", self.human("frobnicate"))
        self.assertTrue(self.human("").endswith("modgate> "))

    def test_dest_list_add_remove_echo(self):
        self.assertEqual([d["name"] for d in self.ok("dest list")], ["archive"])
        self.ok("config set pin 2468")  # commissioning: a destination needs a PIN first
        self.ok("dest add pacs2 PACS2 10.0.0.7 104")
        self.assertEqual(self.ok("dest echo pacs2"), {"name": "pacs2", "ok": True, "rtt_ms": 3})
        self.device.unreachable.add("archive")
        results = self.ok("dest echo all")
        self.assertEqual([(r["name"], r["ok"]) for r in results], [("archive", False), ("pacs2", True)])
        self.assertIn("refused", self.refused("dest echo archive", "failed"))
        self.assertIn("exists", self.refused("dest add pacs2 X 1.2.3.4 104", "failed"))
        self.refused("dest add bad\\name X 1.2.3.4 104", "invalid")
        self.refused("dest add p3 X 1.2.3.4 99999", "invalid")
        self.refused("dest add p3 X", "usage")
        self.ok("dest remove pacs2")
        self.refused("dest remove pacs2", "failed")
        self.assertIn("dest echo", self.human("dest echo"))

    def test_queue(self):
        self.assertEqual(self.ok("queue list")[0]["id"], 1)
        self.assertEqual(self.ok("queue list 1")[0]["uid"], "2.25.1")
        self.refused("queue list 0", "usage")
        self.refused("queue list x", "usage")
        self.assertEqual(self.ok("queue dead")[0]["id"], 2)
        self.assertEqual(self.ok("queue retry"), {"retried": 1})
        self.assertEqual(self.ok("queue retry 1"), {"retried": 1})
        self.refused("queue retry q1", "usage")
        listing = self.human("queue list")
        self.assertIn("pending", listing)
        self.assertIn("2.25.1  archive", listing)
        self.refused("queue purge", "usage")
        self.assertEqual(self.ok("queue purge dead"), {"purged": 1})
        self.assertEqual(self.ok("queue purge all"), {"purged": 1})
        self.assertIn("(none)", self.human("queue list"))

    def test_log_tail(self):
        self.assertEqual(len(self.ok("log tail")), 20)
        self.assertEqual(self.ok("log tail 2")[1], self.device.log[-1])
        self.refused("log tail 1000", "usage")

    def test_time(self):
        self.assertEqual(self.ok("time get"), {"utc": "2026-01-02T03:04:05Z"})
        self.assertEqual(self.ok("time set 2026-11-27T17:05:09Z"), {"utc": "2026-11-27T17:05:09Z"})
        self.assertEqual(self.device.clock, (2026, 11, 27, 17, 5, 9))
        self.ok("time set 2027-01-01 00:00:00")
        self.refused("time set yesterday", "usage")
        self.refused("time set 2026-13-01T00:00:00Z", "usage")

    def test_patient(self):
        data = self.ok('patient next name="DOE^JANE" id=P123 birth_date=19800131 sex=F accession=A77')
        self.assertEqual(
            data, {"name": "DOE^JANE", "id": "P123", "birth_date": "19800131", "sex": "F", "accession": "A77"}
        )
        self.assertEqual(self.ok("patient show")["id"], "P123")
        self.refused("patient next sex=X", "invalid")
        self.refused("patient next birth_date=1980", "invalid")
        self.refused("patient next weight=80", "usage")
        self.refused("patient next", "usage")
        self.assertEqual(self.ok("patient clear"), {})

    def test_patient_values_are_checked_as_the_objects_carry_them(self):
        for line, reason in (("sex=male", "patient sex: must be M, F or O"), ("id=ID\\1", "backslash"),
                             ("accession=" + "A" * 17, "16 bytes"), ("birth_date=19991301", "calendar")):
            self.assertIn(reason, self.refused("patient next " + line, "invalid"))
        self.assertEqual(self.ok('patient next "name=van Dijk^Pat"')["name"], "van Dijk^Pat")

    def test_study_new(self):
        self.assertEqual(self.ok("study new"), {"study": "new"})
        self.assertEqual(self.device.new_studies, 1)
        self.refused("study new now", "usage")

    def test_test_pattern_and_reboot_after_reply(self):
        self.assertEqual(self.ok("test-pattern send"), {"sop_instance_uid": "2.25.1000"})
        self.assertEqual(self.ok("reboot"), {"rebooting": True})
        self.assertEqual(self.device.reboots, 1)

    def test_json_mode_is_one_line_per_command_without_echo_or_prompt(self):
        self.human("json on")
        support.run(self.console.feed(b'status\r\nbogus\r\nconfig set ae_title "a\\b"\r\n\r\n'))
        lines = self.out.take().split("\r\n")
        self.assertEqual(lines[-1], "")
        replies = [json.loads(x) for x in lines[:-1]]
        self.assertEqual([r["ok"] for r in replies], [True, False, False])
        self.assertEqual(replies[1]["code"], "unknown")
        self.assertEqual(replies[2]["code"], "invalid")
        support.run(self.console.feed(b"x" * 300 + b"\r"))
        self.assertEqual(json.loads(self.out.take())["code"], "line")
        support.run(self.console.feed(b"json off\r"))
        self.assertEqual(json.loads(self.out.take())["data"], {"json": False})
        self.assertTrue(self.human("status").endswith("modgate> "))

    def test_handler_bug_is_reported_not_raised(self):
        def broken():
            raise KeyError("oops")

        self.device.status = broken
        reply = self.ask("status")
        self.assertEqual(reply["code"], "internal")
        self.assertIn("KeyError", reply["error"])

    def test_console_json_setting_starts_in_json(self):
        self.device.config.set("console_json", "on")
        out = Stream()
        console = Console(self.device, out)
        console.start()
        support.run(console.feed(b"ident\r"))
        self.assertTrue(json.loads(out.take())["ok"])


class TestPin(ConsoleCase):
    def test_privileged_commands_need_unlock_when_a_pin_is_set(self):
        self.provision_pin()
        for line in (
            "config set ae_title X",
            "config save",
            "config reset",
            "dest add a A 1.2.3.4 1",
            "dest remove archive",
            "queue purge all",
            "reboot",
        ):
            self.assertIn("unlock", self.refused(line, "denied"))
        self.assertEqual(self.device.reboots, 0)
        self.ok("config set console_json off")  # not a privileged key
        self.ok("status")
        self.ok("queue retry")
        self.assertEqual(self.ok("unlock 2468"), {"privileged": "unlocked", "for_s": 600})
        self.assertTrue(self.human("status").endswith("modgate# "))
        self.ok("config set ae_title X")
        self.ok("lock")
        self.refused("config set ae_title Y", "denied")

    def test_wrong_pins_lock_out_with_growing_delay_without_sleeping(self):
        self.provision_pin()
        self.refused("unlock 0000", "denied")
        error = self.refused("unlock 2468", "locked")  # even the right PIN waits
        self.assertIn("try again", error)
        self.assertEqual(self.ok("status")["privileged"], "locked")  # the console still answers
        self.console._retry_at = None  # pretend the wait passed
        self.refused("unlock 1111", "denied")
        self.assertEqual(self.console._failures, 2)
        self.assertIn("2 s", self.ask("unlock 2468")["error"])

    def test_delay_expires(self):
        self.provision_pin()
        self.refused("unlock 0000", "denied")
        sleep_ms(shell_module.PIN_DELAY_FIRST_MS + 50)
        self.assertEqual(self.ok("unlock 2468")["privileged"], "unlocked")
        self.assertEqual(self.console._failures, 0)

    def test_window_expires(self):
        self.provision_pin()
        self.device.config.set("unlock_window_s", "10")
        self.ok("unlock 2468")
        self.assertTrue(self.console.unlocked())
        from modgate.compat import ticks_add, ticks_ms

        self.console._unlocked_until = ticks_add(ticks_ms(), -1)
        self.assertFalse(self.console.unlocked())

    def test_secrets_never_printed(self):
        self.ok("config set pin 97531")
        for line in ("config show", "config get pin_hash", "status", "log tail 64"):
            self.out.take()
            support.run(self.console.feed((line + "\r").encode()))
            text = self.out.take()
            self.assertNotIn("97531", text)
            self.assertNotIn(self.device.config.get("pin_hash").split("$")[2], text)
        self.assertEqual(self.ok("config get pin_hash")["value"], "***")

    def test_no_pin_means_open(self):
        self.assertEqual(self.ok("unlock 1234")["privileged"], "open")
        self.ok("config save")


class TestCommissioning(ConsoleCase):
    """No open doors (issue 19): a device that sends patient data has a PIN, for good."""

    def test_a_destination_needs_a_pin_first(self):
        self.assertIn("PIN first", self.refused("dest add pacs PACS 10.0.0.7 104", "denied"))
        pacs = '{"name":"pacs","aet":"PACS","host":"10.0.0.7","port":104}'
        self.ok("config set destinations '[" + pacs + "]'")
        self.assertIn("PIN first", self.refused("config save", "denied"))
        self.assertFalse(fs.exists(self.device.config.path))  # nothing reached flash
        self.ok("config set pin 97531")  # opens the window for whoever set it
        self.ok("config save")
        self.ok("dest add pacs2 PACS2 10.0.0.8 2762 tls")
        self.assertEqual(self.ok("dest list")[-1], {"name": "pacs2", "aet": "PACS2", "host": "10.0.0.8",
                                                    "port": 2762, "tls": True})
        self.ok("lock")
        self.assertEqual(self.ok("status")["privileged"], "locked")
        self.assertIn("unlock", self.refused("dest add pacs3 PACS3 10.0.0.9 104", "denied"))

    def test_settings_that_send_nothing_anywhere_save_without_a_pin(self):
        self.ok("config set station_name ROOM1")
        self.ok("dest remove archive")
        self.ok("config save")
        self.assertEqual(self.ok("status")["privileged"], "open")

    def test_the_pin_cannot_be_removed(self):
        self.ok("config set pin 97531")
        self.assertIn("not removed", self.refused('config set pin ""', "invalid"))
        self.ok("config set pin 8642")  # changed, yes
        self.assertTrue(self.device.config.check_pin("8642"))

    def test_passcode_is_a_secret(self):
        self.ok("config set user_passcode s3cret-word")
        for line in ("config show", "config get user_passcode", "status"):
            self.out.take()
            support.run(self.console.feed((line + "\r").encode()))
            self.assertNotIn("s3cret-word", self.out.take())
        self.assertEqual(self.ok("config get user_passcode")["value"], "***")
        self.assertEqual(self.ok("config get tls_cert_file")["value"], "")
