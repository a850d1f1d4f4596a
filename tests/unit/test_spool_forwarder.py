"""The forwarder against an injected fake archive: retry, isolation, ordering, dead letters."""

import unittest

import support
from modgate.errors import DeliveryError, LinkTimeout
from modgate.port import fs
from modgate.spool import backoff, routing
from modgate.spool.forwarder import Forwarder
from modgate.spool.queue import Spool

POLICY = {"base_backoff_ms": 100, "max_backoff_ms": 1000, "max_attempts": 0, "max_age_s": 0, "jitter": 0}


class Archive:
    """Destinations as the forwarder sees them. mode per dest: ok | down | reject | slow-reject."""

    def __init__(self):
        self.mode = {}
        self.got = {}
        self.opened = []
        self.released = []
        self.idle = {}

    def factory(self, dest):
        if self.mode.get(dest) == "unreachable":
            raise DeliveryError("connect to " + dest + " refused", True)
        self.opened.append(dest)
        return Session(self, dest)


class Session:
    def __init__(self, archive, dest):
        self.archive = archive
        self.dest = dest

    def store(self, path):
        mode = self.archive.mode.get(self.dest, "ok")
        data = fs.read_bytes(path)
        if mode == "down":
            raise DeliveryError("association aborted", True)
        if mode == "timeout":
            raise LinkTimeout("no reply")
        if mode == "reject":
            raise DeliveryError("status 0xA900 dataset does not match SOP class", False)
        if mode == "refuse-association":
            raise DeliveryError("rejected permanent: calling AE title not recognised", False, "destination")
        self.archive.got.setdefault(self.dest, []).append(data)
        if mode == "warning":
            return 0xB000, "warning", "coercion"
        return 0, "success", ""

    def release(self):
        self.archive.released.append(self.dest)

    def idle_expired(self):
        return self.archive.idle.get(self.dest, False)


class Clock:
    def __init__(self):
        self.ms = 5000
        self.s = 1800000000

    def ticks(self):
        return self.ms

    def seconds(self):
        return self.s


class ForwarderTest(unittest.TestCase):
    dests = ["a", "b"]

    def setUp(self):
        self.root = support.scratch_dir("fwd")
        self.addCleanup(support.remove_tree, self.root)
        self.clock = Clock()
        self.archive = Archive()
        self.spool = Spool(self.root, support.settings(Spool.SETTINGS, spool_budget_bytes=10000000),
                           destinations=self.dests, ticks=self.clock.ticks, seconds=self.clock.seconds)
        self.spool.recover()
        self.fwd = self.forwarder(POLICY)

    def forwarder(self, policy):
        return Forwarder(self.spool, self.archive.factory, policy, rand=lambda: 0.5)

    def put(self, data, series="s1", modality="OT"):
        inc = self.spool.begin()
        with open(inc.path, "wb") as f:
            f.write(data)
        return self.spool.commit(inc, "uid-" + data.decode(), {"series_uid": series, "modality": modality})

    def run_steps(self, limit=100):
        steps = 0
        while self.fwd.step(self.clock.ms) and steps < limit:
            steps += 1
        return steps


class TestDelivery(ForwarderTest):
    def test_every_destination_gets_every_object_in_order(self):
        for i in range(5):
            self.put(b"o%d" % i)
        self.assertEqual(self.fwd.next_due_ms(self.clock.ms), 0)
        self.assertEqual(self.run_steps(), 10)
        want = [b"o%d" % i for i in range(5)]
        self.assertEqual(self.archive.got["a"], want)
        self.assertEqual(self.archive.got["b"], want)
        self.assertEqual(self.spool.stats()["depth"], 0)
        self.assertEqual(fs.listdir(fs.join(self.root, "q")), [])
        self.assertIsNone(self.fwd.next_due_ms(self.clock.ms))
        self.assertEqual(self.archive.opened, ["a", "b"])  # one session per destination, reused
        self.assertEqual(self.spool.stats()["destinations"]["a"]["last_success"], 1800000000)

    def test_warning_status_counts_as_delivered(self):
        self.archive.mode["a"] = "warning"
        self.put(b"w")
        self.run_steps()
        self.assertEqual(self.spool.stats()["depth"], 0)

    def test_idle_sessions_are_released(self):
        self.put(b"x")
        self.run_steps()
        self.archive.idle["a"] = True
        self.fwd.step(self.clock.ms)
        self.assertEqual(self.archive.released, ["a"])
        self.fwd.close()
        self.assertEqual(self.archive.released, ["a", "b"])


class TestRetry(ForwarderTest):
    def test_archive_down_then_up_loses_nothing_and_keeps_order(self):
        self.archive.mode["a"] = "down"
        for i in range(3):
            self.put(b"o%d" % i)
        delays = []
        for _ in range(8):
            self.assertTrue(self.fwd.step(self.clock.ms) or self.fwd.next_due_ms(self.clock.ms) > 0)
            due = self.fwd.next_due_ms(self.clock.ms)
            if due:
                delays.append(due)
                self.clock.ms += due
        self.assertEqual(self.archive.got["b"], [b"o0", b"o1", b"o2"])
        self.assertEqual(delays[:4], [100, 200, 400, 800])  # base 100 doubling, b served meanwhile
        state = self.spool.stats()["destinations"]["a"]
        self.assertEqual(state["pending"], 3)
        self.assertEqual(state["last_error"], "association aborted")
        self.assertIn("a", self.archive.released)  # a broken association is not reused
        self.archive.mode["a"] = "ok"
        self.clock.ms += 1000
        self.run_steps()
        self.assertEqual(self.archive.got["a"], [b"o0", b"o1", b"o2"])
        self.assertEqual(self.spool.stats()["depth"], 0)

    def test_backoff_is_capped(self):
        self.archive.mode["a"] = "unreachable"
        self.put(b"x")
        for _ in range(12):
            self.clock.ms += 2000
            self.fwd.step(self.clock.ms)
        self.assertEqual(self.fwd.next_due_ms(self.clock.ms), 1000)  # the cap
        # one of the 12 steps served b
        self.assertEqual(self.spool.stats()["destinations"]["a"]["attempts"], 11)

    def test_jitter_from_policy(self):
        self.fwd = self.forwarder({"base_backoff_ms": 1000, "jitter": 0.5})
        self.archive.mode["a"] = "down"
        self.put(b"x")
        self.fwd.step(self.clock.ms)
        self.assertEqual(self.fwd.next_due_ms(self.clock.ms), 0)  # b is owed the object
        self.fwd.step(self.clock.ms)
        self.assertEqual(self.fwd.next_due_ms(self.clock.ms), 750)  # 1000 less 0.5 * 0.5 of it

    def test_link_timeout_is_transient(self):
        self.archive.mode["a"] = "timeout"
        self.put(b"x")
        self.fwd.step(self.clock.ms)
        self.assertEqual(self.spool.dead(), [])
        self.assertIn("LinkTimeout", self.spool.stats()["destinations"]["a"]["last_error"])

    def test_max_attempts_moves_to_dead_letters(self):
        self.fwd = self.forwarder({"base_backoff_ms": 10, "max_attempts": 3, "jitter": 0})
        self.archive.mode["a"] = "down"
        self.put(b"x")
        for _ in range(5):
            self.clock.ms += 100
            self.fwd.step(self.clock.ms)
        dead = self.spool.dead()
        self.assertEqual(len(dead), 1)
        self.assertIn("gave up after 3 attempts", dead[0]["dead"]["a"])
        self.assertEqual(self.archive.got["b"], [b"x"])

    def test_max_age_moves_to_dead_letters_without_an_attempt(self):
        self.fwd = self.forwarder({"max_age_s": 60})
        self.put(b"x")
        self.clock.s += 61
        self.archive.mode["b"] = "down"
        self.fwd.step(self.clock.ms)
        self.assertIn("max_age_s", self.spool.dead()[0]["dead"]["a"])
        self.assertEqual(self.archive.got, {})


class TestObservability(ForwarderTest):
    def test_stats_report_depth_age_and_per_destination_state(self):
        self.archive.mode["a"] = "down"
        self.put(b"o0")
        self.clock.s += 30
        self.put(b"o1")
        self.clock.s += 12
        self.fwd.step(self.clock.ms)  # a fails: retry in 100 ms
        self.fwd.step(self.clock.ms)  # b gets o0
        stats = self.spool.stats(self.clock.ms)
        self.assertEqual(stats["depth"], 2)
        self.assertEqual(stats["oldest_age_s"], 42)
        self.assertEqual(stats["bytes"], self.spool.used_bytes())
        a = stats["destinations"]["a"]
        self.assertEqual((a["pending"], a["attempts"], a["next_retry_s"]), (2, 1, 0.1))
        self.assertEqual(a["last_error"], "association aborted")
        self.assertIsNone(a["last_success"])
        b = stats["destinations"]["b"]
        self.assertEqual((b["pending"], b["last_success"], b["last_error"]), (1, 1800000042, None))
        listed = self.spool.list(5)
        self.assertEqual([(e["uid"], e["pending"], e["done"]) for e in listed],
                         [("uid-o0", ["a"], ["b"]), ("uid-o1", ["a", "b"], [])])


class TestIsolation(ForwarderTest):
    dests = ["dead", "live"]

    def test_dead_destination_never_delays_the_other(self):
        self.archive.mode["dead"] = "unreachable"
        for i in range(20):
            self.put(b"o%d" % i)
        steps = 0
        while len(self.archive.got.get("live", [])) < 20:
            self.assertTrue(self.fwd.step(self.clock.ms))
            steps += 1
            self.clock.ms += 1
        # one failed attempt, then the dead destination sits in backoff while "live" drains
        self.assertEqual(steps, 21)
        self.assertEqual(self.spool.stats()["destinations"]["dead"]["pending"], 20)
        self.assertEqual(self.spool.stats()["depth"], 20)


class TestDeadLetters(ForwarderTest):
    def test_permanent_failure_dead_letters_then_requeue_after_fix(self):
        self.archive.mode["a"] = "reject"
        self.put(b"o0", series="s1")
        self.put(b"o1", series="s1")
        self.run_steps()
        dead = self.spool.dead()
        self.assertEqual([d["id"] for d in dead], [1, 2])
        self.assertIn("permanent: status 0xA900", dead[0]["dead"]["a"])
        self.assertEqual(self.archive.got["b"], [b"o0", b"o1"])
        self.assertEqual(self.spool.stats()["destinations"]["a"]["next_retry_s"], 0)
        self.archive.mode["a"] = "ok"
        self.assertEqual(self.spool.requeue("all"), 2)
        self.run_steps()
        self.assertEqual(self.archive.got["a"], [b"o0", b"o1"])
        self.assertEqual(self.spool.stats()["depth"], 0)

    def test_permanent_association_reject_holds_the_queue_without_dead_letters(self):
        self.archive.mode["a"] = "refuse-association"
        self.put(b"o0")
        self.put(b"o1")
        self.run_steps()
        self.assertEqual(self.spool.dead(), [])  # the objects are not to blame
        self.assertEqual(self.archive.got["b"], [b"o0", b"o1"])
        status = self.spool.stats()["destinations"]["a"]
        self.assertIn("rejected permanent", status["last_error"])
        self.assertEqual(status["pending"], 2)
        self.assertGreater(status["next_retry_s"], 0)
        self.archive.mode["a"] = "ok"  # configuration fixed; the held queue goes out in order
        self.clock.ms += POLICY["max_backoff_ms"] + 1
        self.run_steps()
        self.assertEqual(self.archive.got["a"], [b"o0", b"o1"])

    def test_removed_destination_is_not_served(self):
        self.put(b"x")
        self.spool.set_destinations(["b"])
        self.run_steps()
        self.assertNotIn("a", self.archive.got)
        self.assertEqual(self.spool.stats()["destinations"]["a"]["pending"], 1)


class TestCapacityRecovery(ForwarderTest):
    def test_busy_until_the_queue_drains_below_the_low_mark(self):
        from modgate.spool.queue import ENTRY_OVERHEAD

        settings = support.settings(Spool.SETTINGS, spool_budget_bytes=10 * (64 + ENTRY_OVERHEAD),
                                    spool_high_pct=80, spool_low_pct=30)
        self.spool = Spool(self.root, settings, destinations=["a"], ticks=self.clock.ticks,
                           seconds=self.clock.seconds)
        self.spool.recover()
        self.fwd = self.forwarder(POLICY)
        self.archive.mode["a"] = "down"
        accepted = 0
        while not self.spool.admit():
            self.put(b"%064d" % accepted)
            accepted += 1
        self.assertEqual(accepted, 8)
        self.fwd.step(self.clock.ms)
        self.archive.mode["a"] = "ok"
        self.clock.ms += 1000
        busy_seen = []
        while self.fwd.step(self.clock.ms):
            busy_seen.append(self.spool.admit())
        self.assertEqual(busy_seen, [1000, 1000, 1000, 1000, 0, 0, 0, 0])
        self.assertEqual(len(self.archive.got["a"]), accepted)


class TestBackoffAndRouting(unittest.TestCase):
    def test_delays_double_and_cap(self):
        got = [backoff.delay_ms(n, 100, 1000) for n in range(1, 7)]
        self.assertEqual(got, [100, 200, 400, 800, 1000, 1000])
        self.assertEqual(backoff.delay_ms(200, 100, 1000), 1000)

    def test_jitter_stays_within_its_fraction(self):
        for n in range(200):
            d = backoff.delay_ms(3, 100, 10000, 0.25)
            self.assertGreaterEqual(d, 300)
            self.assertLessEqual(d, 400)
        self.assertEqual(backoff.delay_ms(3, 100, 10000, 1.0, lambda: 0.999), 1)

    def test_rules(self):
        rules = [{"dest": "ct", "modality": "CT"}, {"dest": "ct", "iod": "sc"},
                 {"dest": "none", "modality": []}]
        self.assertEqual(routing.route(rules, ["ct", "all", "none"], {"modality": "CT"}), ["ct", "all"])
        self.assertEqual(routing.route(rules, ["ct", "all", "none"], {"modality": "US", "iod": "sc"}),
                         ["ct", "all"])
        self.assertEqual(routing.route(rules, ["ct", "all"], {"modality": "US"}), ["all"])
        routing.check(rules)
        with self.assertRaises(ValueError):
            routing.check([{"dest": "x", "colour": "red"}])


if __name__ == "__main__":
    unittest.main()
