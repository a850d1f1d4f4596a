"""The forwarder against an injected fake archive: retry, isolation, ordering, dead letters.

Each destination's worker makes one attempt at a time (Forwarder.attempt); `step()` here gives
the destinations turns in order, one attempt per call, so a test reads as a timeline."""

import unittest

import support
from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import DeliveryError, LinkTimeout
from modgate.port import aio, fs
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
        self.sent_whole = False

    async def store(self, path):
        mode = self.archive.mode.get(self.dest, "ok")
        data = fs.read_bytes(path)
        self.sent_whole = mode in ("answer-lost", "duplicate")
        if mode == "answer-lost":
            raise DeliveryError("no C-STORE-RSP within the timeout", True)
        if mode == "duplicate":
            return 0x0111, "duplicate", "already holds this UID"
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

    async def release(self):
        self.archive.released.append(self.dest)

    def drop(self):
        self.archive.released.append(self.dest)

    async def echo(self):
        if self.archive.mode.get(self.dest) == "down":
            raise DeliveryError("association aborted", True)
        return 3

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
        self.turn = 0

    def forwarder(self, policy):
        return Forwarder(self.spool, self.archive.factory, policy, rand=lambda: 0.5)

    def put(self, data, series="s1", modality="OT"):
        inc = self.spool.begin()
        with open(inc.path, "wb") as f:
            f.write(data)
        return self.spool.commit(inc, "uid-" + data.decode(), {"series_uid": series, "modality": modality})

    def step(self):
        """One attempt by the next destination (in turn) that has work; True if one was made."""
        dests = self.spool.destinations
        for i in range(len(dests)):
            name = dests[(self.turn + i) % len(dests)]
            if support.run(self.fwd.attempt(name, self.clock.ms)):
                self.turn = (self.turn + i + 1) % len(dests)
                return True
        return False

    def next_due(self):
        """Milliseconds until some destination has work; None when nothing is owed."""
        dues = [self.fwd.due_ms(n, self.clock.ms) for n in self.spool.destinations]
        dues = [d for d in dues if d is not None]
        return min(dues) if dues else None

    def run_steps(self, limit=100):
        steps = 0
        while self.step() and steps < limit:
            steps += 1
        return steps


class TestDelivery(ForwarderTest):
    def test_every_destination_gets_every_object_in_order(self):
        for i in range(5):
            self.put(b"o%d" % i)
        self.assertEqual(self.next_due(), 0)
        self.assertEqual(self.run_steps(), 10)
        want = [b"o%d" % i for i in range(5)]
        self.assertEqual(self.archive.got["a"], want)
        self.assertEqual(self.archive.got["b"], want)
        self.assertEqual(self.spool.stats()["depth"], 0)
        self.assertEqual(fs.listdir(fs.join(self.root, "q")), [])
        self.assertIsNone(self.next_due())
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
        support.run(self.fwd._release_if_idle("a"))
        self.assertEqual(self.archive.released, ["a"])
        support.run(self.fwd.close())
        self.assertEqual(self.archive.released, ["a", "b"])


class TestRetry(ForwarderTest):
    def test_archive_down_then_up_loses_nothing_and_keeps_order(self):
        self.archive.mode["a"] = "down"
        for i in range(3):
            self.put(b"o%d" % i)
        delays = []
        for _ in range(8):
            self.assertTrue(self.step() or self.next_due() > 0)
            due = self.next_due()
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
            self.step()
        self.assertEqual(self.next_due(), 1000)  # the cap
        # one of the 12 steps served b
        self.assertEqual(self.spool.stats()["destinations"]["a"]["attempts"], 11)

    def test_jitter_from_policy(self):
        self.fwd = self.forwarder({"base_backoff_ms": 1000, "jitter": 0.5})
        self.archive.mode["a"] = "down"
        self.put(b"x")
        self.step()
        self.assertEqual(self.next_due(), 0)  # b is owed the object
        self.step()
        self.assertEqual(self.next_due(), 750)  # 1000 less 0.5 * 0.5 of it

    def test_link_timeout_is_transient(self):
        self.archive.mode["a"] = "timeout"
        self.put(b"x")
        self.step()
        self.assertEqual(self.spool.dead(), [])
        self.assertIn("LinkTimeout", self.spool.stats()["destinations"]["a"]["last_error"])

    def test_max_attempts_moves_to_dead_letters(self):
        self.fwd = self.forwarder({"base_backoff_ms": 10, "max_attempts": 3, "jitter": 0})
        self.archive.mode["a"] = "down"
        self.put(b"x")
        for _ in range(5):
            self.clock.ms += 100
            self.step()
        dead = self.spool.dead()
        self.assertEqual(len(dead), 1)
        self.assertIn("gave up after 3 attempts", dead[0]["dead"]["a"])
        self.assertEqual(self.archive.got["b"], [b"x"])

    def test_max_age_moves_to_dead_letters_without_an_attempt(self):
        self.fwd = self.forwarder({"max_age_s": 60})
        self.put(b"x")
        self.clock.s += 61
        self.archive.mode["b"] = "down"
        self.step()
        self.assertIn("max_age_s", self.spool.dead()[0]["dead"]["a"])
        self.assertEqual(self.archive.got, {})


class TestObservability(ForwarderTest):
    def test_stats_report_depth_age_and_per_destination_state(self):
        self.archive.mode["a"] = "down"
        self.put(b"o0")
        self.clock.s += 30
        self.put(b"o1")
        self.clock.s += 12
        self.step()  # a fails: retry in 100 ms
        self.step()  # b gets o0
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
            self.assertTrue(self.step())
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


class TestDuplicate(ForwarderTest):
    """0111 (PS3.7 C.4.5): delivered only when the archive's copy can be ours."""

    dests = ["a"]

    def test_a_duplicate_no_attempt_can_explain_is_a_dead_letter(self):
        self.archive.mode["a"] = "duplicate"
        self.put(b"x")
        self.run_steps()
        [dead] = self.spool.dead()
        self.assertIn("UID collision", dead["dead"]["a"])

    def test_after_a_lost_answer_the_duplicate_counts_as_delivered(self):
        self.archive.mode["a"] = "answer-lost"
        self.put(b"x")
        self.step()
        self.archive.mode["a"] = "duplicate"
        self.clock.ms += 1000
        self.run_steps()
        self.assertEqual(self.spool.dead(), [])
        self.assertEqual(self.spool.stats()["depth"], 0)

    def test_an_entry_from_before_a_restart_counts_as_delivered(self):
        self.put(b"x")
        settings = support.settings(Spool.SETTINGS, spool_budget_bytes=10000000)
        self.spool = Spool(self.root, settings, destinations=self.dests, ticks=self.clock.ticks,
                           seconds=self.clock.seconds)
        self.spool.recover()  # the power cut may have fallen between sending it and logging that
        self.fwd = self.forwarder(POLICY)
        self.archive.mode["a"] = "duplicate"
        self.run_steps()
        self.assertEqual(self.spool.dead(), [])
        self.assertEqual(self.spool.stats()["depth"], 0)


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
        self.step()
        self.archive.mode["a"] = "ok"
        self.clock.ms += 1000
        busy_seen = []
        while self.step():
            busy_seen.append(self.spool.admit())
        self.assertEqual(busy_seen, [1000, 1000, 1000, 1000, 0, 0, 0, 0])
        self.assertEqual(len(self.archive.got["a"]), accepted)


class SlowSession(Session):
    """A black hole: every store waits `hang_ms` before it fails, as a silent archive makes us."""

    hang_ms = 400

    async def store(self, path):
        if self.archive.mode.get(self.dest) == "black-hole":
            await aio.sleep_ms(self.hang_ms)
            raise DeliveryError("no A-ASSOCIATE-AC within the timeout", True)
        return await Session.store(self, path)


class TestWorkers(ForwarderTest):
    """The per-destination worker tasks, concurrently, with the real event loop."""

    dests = ["hole", "live"]

    def forwarder(self, policy):
        archive = self.archive
        self.online = [True]
        return Forwarder(self.spool, lambda dest: SlowSession(archive, dest), policy, rand=lambda: 0.5,
                         online=lambda: self.online[0])

    def serve(self, until, limit_ms=5000):
        """Run both workers until `until()` holds (or limit_ms passes); the ms it took."""
        async def body():
            tasks = [aio.create_task(self.fwd.run(n, lambda: None)) for n in self.dests]
            start = ticks_ms()
            while not until() and ticks_diff(ticks_ms(), start) < limit_ms:
                await aio.sleep_ms(5)
            took = ticks_diff(ticks_ms(), start)
            for t in tasks:
                t.cancel()
            return took

        return support.run(body())

    def test_a_black_hole_never_delays_the_other_destination(self):
        self.archive.mode["hole"] = "black-hole"
        for i in range(10):
            self.put(b"o%d" % i)
        took = self.serve(lambda: len(self.archive.got.get("live", [])) == 10)
        self.assertEqual(len(self.archive.got["live"]), 10)
        self.assertLess(took, SlowSession.hang_ms)  # all ten before the hole's first timeout
        self.assertEqual(self.spool.stats()["destinations"]["hole"]["pending"], 10)

    def test_echo_waits_for_the_delivery_in_progress(self):
        self.archive.mode["hole"] = "black-hole"
        self.put(b"x")
        order = []

        async def body():
            worker = aio.create_task(self.fwd.run("hole", lambda: None))
            await aio.sleep_ms(50)  # the worker is inside its store now
            self.archive.mode["hole"] = "ok"
            order.append(await self.fwd.echo("hole"))
            order.append(self.spool.stats()["destinations"]["hole"]["last_error"])
            worker.cancel()

        support.run(body())
        # The echo took its turn only after the store it waited behind had failed.
        self.assertEqual(order, [3, "no A-ASSOCIATE-AC within the timeout"])

    def test_offline_workers_wait_then_deliver(self):
        self.online[0] = False
        self.put(b"x")
        self.serve(lambda: False, limit_ms=300)
        self.assertEqual(self.archive.got, {})
        self.online[0] = True
        got = self.archive.got
        self.serve(lambda: len(got.get("live", [])) == 1 and len(got.get("hole", [])) == 1)
        self.assertEqual(self.spool.stats()["depth"], 0)

    def test_a_removed_destination_ends_its_worker(self):
        async def body():
            worker = aio.create_task(self.fwd.run("hole", lambda: None))
            await aio.sleep_ms(20)
            self.spool.set_destinations(["live"])
            self.fwd.nudge()
            await aio.wait_for_ms(worker, 2000)  # returns: no cancel needed

        support.run(body())


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
