"""The queue on flash: commit, recovery from every crash point, capacity, dead letters, routing."""

import json
import unittest

import support
from modgate import log
from modgate.errors import SpoolFull
from modgate.port import fs
from modgate.spool import entrylog
from modgate.spool.queue import ENTRY_OVERHEAD, FREE_MARGIN, Spool


class Clock:
    def __init__(self):
        self.ms = 1000
        self.s = 1800000000

    def ticks(self):
        return self.ms

    def seconds(self):
        return self.s


# Short names for the settings these tests vary.
_KEYS = {"budget_bytes": "spool_budget_bytes", "high_pct": "spool_high_pct", "low_pct": "spool_low_pct",
         "dead_max_items": "dead_max_items", "dead_policy": "dead_policy", "max_items": "spool_max_items",
         "routing": "routing"}


def make(root, clock, destinations=("a", "b"), **kw):
    values = {"spool_budget_bytes": 1000000}
    for name in kw:
        values[_KEYS[name]] = kw[name]
    spool = Spool(root, support.settings(Spool.SETTINGS, **values), destinations=destinations,
                  ticks=clock.ticks, seconds=clock.seconds)
    spool.recover()
    return spool


def put(spool, uid, data=b"payload", meta=None):
    inc = spool.begin()
    with open(inc.path, "wb") as f:
        f.write(data)
    return spool.commit(inc, uid, meta or {"modality": "OT", "series_uid": "1.2"})


def files(root):
    out = []
    for sub in ("q", "in"):
        for name in fs.listdir(fs.join(root, sub)):
            out.append(sub + "/" + name)
    return out


class SpoolTest(unittest.TestCase):
    def setUp(self):
        self.root = support.scratch_dir("spool")
        self.addCleanup(support.remove_tree, self.root)
        self.clock = Clock()
        self.spool = make(self.root, self.clock)

    def reboot(self, **kw):
        self.spool = make(self.root, self.clock, **kw)
        return self.spool


class TestCommit(SpoolTest):
    def test_commit_leaves_data_and_log_only(self):
        eid = put(self.spool, "1.2.3.1", b"abc")
        self.assertEqual(eid, 1)
        self.assertEqual(files(self.root), ["q/0000000001.dcm", "q/0000000001.m"])
        self.assertEqual(fs.read_bytes(self.spool.data_path(eid)), b"abc")
        listed = self.spool.list(10)
        self.assertEqual(listed[0]["uid"], "1.2.3.1")
        self.assertEqual(listed[0]["pending"], ["a", "b"])
        stats = self.spool.stats()
        self.assertEqual(stats["depth"], 1)
        self.assertEqual(stats["bytes"], 3 + ENTRY_OVERHEAD)
        self.assertEqual(stats["destinations"]["a"]["pending"], 1)

    def test_ids_follow_commit_order_not_begin_order(self):
        first = self.spool.begin()
        second = self.spool.begin()
        with open(second.path, "wb") as f:
            f.write(b"2")
        with open(first.path, "wb") as f:
            f.write(b"1")
        self.assertEqual(self.spool.commit(second, "u2", {}), 1)
        self.assertEqual(self.spool.commit(first, "u1", {}), 2)
        self.assertEqual([e["uid"] for e in self.spool.list(5)], ["u2", "u1"])

    def test_abort_removes_the_temporary_file(self):
        inc = self.spool.begin()
        self.assertTrue(fs.exists(inc.path))
        self.spool.abort(inc)
        self.assertEqual(files(self.root), [])

    def test_commit_twice_is_refused(self):
        inc = self.spool.begin()
        self.spool.commit(inc, "u", {})
        with self.assertRaises(ValueError):
            self.spool.commit(inc, "u", {})

    def test_done_everywhere_deletes_both_files(self):
        eid = put(self.spool, "u")
        self.spool.mark_done(eid, "a")
        self.assertEqual(self.spool.stats()["depth"], 1)
        self.assertIsNone(self.spool.next_for("a"))
        self.assertEqual(self.spool.next_for("b")[0], eid)
        self.spool.mark_done(eid, "b")
        self.assertEqual(files(self.root), [])
        self.assertEqual(self.spool.stats()["bytes"], 0)


class TestRecovery(SpoolTest):
    def test_state_survives_a_restart(self):
        one = put(self.spool, "u1")
        two = put(self.spool, "u2")
        self.spool.mark_done(one, "a")
        self.spool.mark_dead(two, "b", "refused\nby peer")
        spool = self.reboot()
        self.assertEqual(spool.next_for("a")[0], two)
        self.assertEqual(spool.next_for("b")[0], one)
        dead = spool.dead()
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["dead"], {"b": "refused by peer"})
        self.assertEqual(put(spool, "u3"), 3)

    def test_unacknowledged_leftovers_are_removed(self):
        inc = self.spool.begin()
        with open(inc.path, "wb") as f:
            f.write(b"half")
        # Crash after the log was written and before the rename: the commit never returned.
        entrylog.create(fs.join(self.root, "q/0000000007.m"), {"uid": "x"}, ["a"])
        with open(fs.join(self.root, "q/0000000008.m.tmp"), "w") as f:
            f.write("x")
        with open(fs.join(self.root, "in/o9.json"), "w") as f:
            f.write("{}")
        spool = self.reboot()
        self.assertEqual(files(self.root), [])
        self.assertEqual(spool.stats()["depth"], 0)

    def test_half_deleted_and_fully_delivered_entries_finish_their_deletion(self):
        one = put(self.spool, "u1")
        two = put(self.spool, "u2")
        fs.remove(self.spool.data_path(one))  # crash between removing data and log
        entrylog.append(fs.join(self.root, "q/0000000002.m"), ["D", "a"])
        entrylog.append(fs.join(self.root, "q/0000000002.m"), ["D", "b"])  # crash before removal
        spool = self.reboot()
        self.assertEqual(files(self.root), [])
        self.assertIsNone(spool.next_for("a"))
        self.assertEqual(two, 2)

    def test_torn_last_line_is_ignored(self):
        eid = put(self.spool, "u1")
        with open(fs.join(self.root, "q/0000000001.m"), "a") as f:
            f.write('["D", "a"')
        spool = self.reboot()
        self.assertEqual(spool.next_for("a")[0], eid)

    def test_data_without_log_is_kept_for_every_destination(self):
        eid = put(self.spool, "u1")
        fs.remove(fs.join(self.root, "q/0000000001.m"))
        spool = self.reboot()
        self.assertEqual(spool.next_for("a")[0], eid)
        self.assertEqual(spool.next_for("b")[0], eid)


def write_open(spool, inc, frames, frame=4, tail=b""):
    """An open object as a caller writes it: a header, then frames each checkpointed."""
    with open(inc.path, "r+b") as f:
        f.write(b"HDR")
        for i in range(frames):
            f.write(bytes([65 + i]) * frame)
            spool.checkpoint(inc, f, 3 + (i + 1) * frame)
        f.write(tail)  # a frame torn by the power cut, never acknowledged
        f.flush()


class TestOpenObjects(SpoolTest):
    def test_open_object_survives_and_commits_with_its_torn_tail_cut(self):
        inc = self.spool.begin(12, open_meta={"uid": "mf", "frame": 4})
        write_open(self.spool, inc, 3, tail=b"zz")
        spool = self.reboot()
        [got] = spool.open_objects()
        self.assertEqual(got.open_meta, {"uid": "mf", "frame": 4})
        self.assertEqual(got.held, 17)
        self.assertEqual(spool.used_bytes(), 17)  # counted in the budget as it is on flash
        eid = spool.commit(got, "mf", {"modality": "XA"}, size=3 + 3 * 4)
        self.assertEqual(fs.read_bytes(spool.data_path(eid)), b"HDRAAAABBBBCCCC")
        self.assertEqual(spool.open_objects(), [])
        self.assertEqual(files(self.root), ["q/0000000001.dcm", "q/0000000001.m"])
        self.assertEqual(self.reboot().open_objects(), [])
        self.assertEqual(self.spool.used_bytes(), 15 + ENTRY_OVERHEAD)

    def test_open_object_without_a_checkpoint_is_not_kept(self):
        # No note yet: no frame of it was acknowledged.
        inc = self.spool.begin(open_meta={"uid": "x"})
        with open(inc.path, "wb") as f:
            f.write(b"HDRAAAA")
        self.assertEqual(files(self.root), ["in/o1.open"])
        self.assertEqual(self.reboot().open_objects(), [])
        self.assertEqual(files(self.root), [])

    def test_plain_incoming_is_not_an_open_object(self):
        self.spool.begin()
        self.assertEqual(self.reboot().open_objects(), [])

    def test_open_numbers_do_not_collide_after_restart(self):
        first = self.spool.begin(open_meta={})
        write_open(self.spool, first, 1)
        spool = self.reboot()
        second = spool.begin(open_meta={})
        self.assertNotEqual(first.path, second.path)
        write_open(spool, second, 1)
        spool.abort(spool.open_objects()[0])
        self.assertEqual(files(self.root), ["in/o2.json", "in/o2.open"])

    def test_note_is_rewritten_when_given(self):
        inc = self.spool.begin(open_meta={"n": 1})
        with open(inc.path, "r+b") as f:
            f.write(b"HDR")
            self.spool.checkpoint(inc, f, 3)
            f.write(b"AAAA")
            self.spool.checkpoint(inc, f, 7, {"n": 2})
        self.assertEqual(json.loads(fs.read_bytes(fs.join(self.root, "in/o1.json"))), {"n": 2})
        self.assertEqual(self.reboot().open_objects()[0].open_meta, {"n": 2})


class TestTags(SpoolTest):
    def tag(self, key, n):
        inc = self.spool.begin()
        return self.spool.commit(inc, "u%d" % n, {}, tag={"key": key, "n": n})

    def test_the_newest_tag_of_a_key_survives_a_restart(self):
        for n in range(5):
            self.tag("frame:tcp:10.0.0.1", n)
        self.tag("series:7", 9)
        want = ({"key": "frame:tcp:10.0.0.1", "n": 4}, "u4")
        self.assertEqual(self.spool.tagged("frame:tcp:10.0.0.1"), want)
        spool = self.reboot()
        self.assertEqual(spool.tagged("frame:tcp:10.0.0.1")[1], "u4")
        self.assertEqual(spool.tagged("series:7")[1], "u9")
        self.assertIsNone(spool.tagged("frame:tcp:10.0.0.2"))

    def test_only_the_keys_tagged_last_are_kept(self):
        from modgate.spool.queue import TAGS_KEPT

        for n in range(TAGS_KEPT + 4):
            self.tag("k%d" % n, n)
        for spool in (self.spool, self.reboot()):
            self.assertIsNone(spool.tagged("k3"))
            self.assertEqual(spool.tagged("k4")[1], "u4")
            self.assertEqual(spool.tagged("k%d" % (TAGS_KEPT + 3))[1], "u%d" % (TAGS_KEPT + 3))


class TestBadInputToRecovery(SpoolTest):
    def log_of(self, eid):
        return fs.join(self.root, "q/%010d.m" % eid)

    def test_garbled_note_keeps_the_object_counted_and_undelivered(self):
        inc = self.spool.begin(open_meta={"uid": "mf"})
        write_open(self.spool, inc, 2)
        with open(fs.join(self.root, "in/o1.json"), "wb") as f:
            f.write(b'{"uid": "mf", \xff\x00')
        for _ in range(2):  # and again at the next boot: never deleted
            spool = self.reboot()
            self.assertEqual(spool.open_objects(), [])
            self.assertEqual(spool.used_bytes(), 11)
            self.assertEqual(spool.stats()["unreadable_open"], 1)
            self.assertEqual(files(self.root), ["in/o1.json", "in/o1.open"])
        self.assertEqual(spool.begin().number, 2)

    def test_foreign_files_and_folders_are_left_alone(self):
        eid = put(self.spool, "u1")
        fs.makedirs(fs.join(self.root, "q/lost+found"))
        fs.makedirs(fs.join(self.root, "in/t9.part"))  # a folder with one of our names
        for name in ("q/notes.txt", "q/x.dcm", "in/README", "in/o7.openx"):
            with open(fs.join(self.root, name), "w") as f:
                f.write("not ours")
        spool = self.reboot()
        self.assertEqual(spool.next_for("a")[0], eid)
        self.assertEqual(sorted(files(self.root)), ["in/README", "in/o7.openx", "in/t9.part",
                                                    "q/0000000001.dcm", "q/0000000001.m", "q/lost+found",
                                                    "q/notes.txt", "q/x.dcm"])
        self.assertEqual(put(spool, "u2"), 2)

    def test_garbled_lines_of_an_entry_log_are_skipped(self):
        one = put(self.spool, "u1")
        two = put(self.spool, "u2")
        with open(self.log_of(one), "ab") as f:
            f.write(b'\xff\xfe garbage\n["D", 5]\n["X", "a"]\n["D", "a"]\n{"D": "b"}\n')
        with open(self.log_of(two), "ab") as f:
            f.write(b'["X", "b", "refused"]\n["D", "a"')  # the last line torn
        spool = self.reboot()
        self.assertEqual(spool.next_for("a")[0], two)  # one's "D a" counted, the junk not
        self.assertEqual(spool.next_for("b")[0], one)
        self.assertEqual([d["id"] for d in spool.dead()], [two])

    def test_truncated_entry_log_is_rebuilt_for_every_destination(self):
        one = put(self.spool, "u1")
        two = put(self.spool, "u2", meta={"modality": "CT"})
        data = fs.read_bytes(self.log_of(one))
        with open(self.log_of(one), "wb") as f:
            f.write(data[:10])  # not even the header line survived
        data = fs.read_bytes(self.log_of(two))
        with open(self.log_of(two), "wb") as f:
            f.write(data[:data.index(b"\n") + 1])  # the header, no routing line
        spool = self.reboot(routing=[{"dest": "b", "modality": "CT"}, {"dest": "a", "modality": "OT"}])
        self.assertEqual(spool.list(5)[0]["pending"], ["a", "b"])
        self.assertEqual(spool.list(5)[1]["pending"], ["b"])  # routed again from its header
        self.assertEqual(self.reboot().list(5)[1]["pending"], ["b"])  # and written down


class TestCapacity(SpoolTest):
    def test_busy_from_high_until_low_watermark(self):
        spool = self.reboot(budget_bytes=10 * (100 + ENTRY_OVERHEAD), high_pct=50, low_pct=20)
        ids = []
        for i in range(4):
            ids.append(put(spool, "u%d" % i, b"x" * 100))
            self.assertEqual(spool.admit(), 0)
        ids.append(put(spool, "u4", b"x" * 100))
        self.assertEqual(spool.admit(), 1000)
        self.assertTrue(spool.stats()["busy"])
        for eid in ids[:2]:
            spool.mark_done(eid, "a")
            spool.mark_done(eid, "b")
        self.assertEqual(spool.admit(), 1000)  # 3 of 10 left: above the low mark
        self.assertEqual(spool.busy(), 1000)
        spool.mark_done(ids[2], "a")
        spool.mark_done(ids[2], "b")
        self.assertEqual(spool.busy(), 0)
        self.assertEqual(spool.admit(), 0)

    def test_status_reads_change_nothing(self):
        spool = self.reboot(budget_bytes=10 * (100 + ENTRY_OVERHEAD), high_pct=50, low_pct=20)
        ids = [put(spool, "u%d" % i, b"x" * 100) for i in range(5)]
        before = log.tail(100)
        for _ in range(3):
            self.assertTrue(spool.stats()["busy"])
            self.assertEqual(spool.busy(), 1000)
        self.assertEqual(log.tail(100), before)  # no watermark log line from reading
        for eid in ids[:3]:
            spool.mark_done(eid, "a")
            spool.mark_done(eid, "b")
        # Never admitted while full, so the hysteresis never engaged: plain 50 % mark.
        self.assertEqual(spool.busy(), 0)
        self.assertEqual(spool.admit(), 0)

    def test_open_object_growth_counts(self):
        spool = self.reboot(budget_bytes=1000, high_pct=50, low_pct=10)
        inc = spool.begin(open_meta={})
        with open(inc.path, "r+b") as f:
            f.write(b"x" * 600)
            spool.checkpoint(inc, f, 600)
        self.assertEqual(spool.used_bytes(), 600)
        self.assertEqual(spool.admit(), 1000)
        spool.abort(inc)
        self.assertEqual(spool.used_bytes(), 0)
        self.assertEqual(spool.admit(), 0)

    def test_reservations_count_until_checkpoint_or_release(self):
        spool = self.reboot(budget_bytes=1000)
        inc = spool.begin(100, open_meta={})
        self.assertEqual(spool.used_bytes(), 100)
        with open(inc.path, "r+b") as f:
            f.write(b"x" * 90)
            spool.checkpoint(inc, f, 90)
        self.assertEqual(spool.used_bytes(), 90)
        spool.reserve(inc, 400)
        self.assertEqual(spool.used_bytes(), 490)
        with self.assertRaises(SpoolFull):
            spool.reserve(inc, 920)
        spool.release(inc)
        self.assertEqual(spool.used_bytes(), 90)

    def test_object_larger_than_the_budget_is_refused_before_writing(self):
        spool = self.reboot(budget_bytes=1000)
        with self.assertRaises(SpoolFull):
            spool.begin(expected_bytes=2000)
        self.assertEqual(spool.admit(2000), 1000)
        self.assertEqual(files(self.root), [])

    def test_entry_table_limit_makes_busy(self):
        spool = self.reboot(max_items=2)
        put(spool, "u1")
        self.assertEqual(spool.admit(), 0)
        put(spool, "u2")
        self.assertEqual(spool.admit(), 1000)

    def test_real_free_flash_below_what_the_budget_assumed_makes_busy(self):
        real = fs.free_bytes
        free = [10 ** 9]
        fs.free_bytes = lambda path: free[0]
        self.addCleanup(setattr, fs, "free_bytes", real)
        spool = self.reboot()
        self.assertEqual(spool.admit(5000), 0)
        free[0] = 5000 + FREE_MARGIN - 1  # another program filled the medium
        self.assertEqual(spool.admit(5000), 1000)
        self.assertEqual(spool.admit(100), 0)
        self.assertEqual(spool.stats()["flash_free"], free[0])
        free[0] = None  # a port that cannot tell: the budget alone decides
        self.assertEqual(spool.admit(5000), 0)
        self.assertIsNone(spool.stats()["flash_free"])


class TestDeadLetters(SpoolTest):
    def test_drop_oldest_policy_bounds_the_area(self):
        spool = self.reboot(dead_max_items=2, destinations=["a"])
        ids = [put(spool, "u%d" % i) for i in range(3)]
        for eid in ids:
            spool.mark_dead(eid, "a", "rejected")
        self.assertEqual([d["id"] for d in spool.dead()], ids[1:])
        self.assertFalse(fs.exists(spool.data_path(ids[0])))
        self.assertEqual([d["id"] for d in self.reboot(dead_max_items=2, destinations=["a"]).dead()], ids[1:])

    def test_refuse_policy_keeps_everything_and_reports_busy(self):
        spool = self.reboot(dead_max_items=1, dead_policy="refuse", destinations=["a"])
        one = put(spool, "u1")
        two = put(spool, "u2")
        spool.mark_dead(one, "a", "rejected")
        self.assertEqual(spool.busy(), 1000)
        spool.mark_dead(two, "a", "rejected")
        self.assertEqual(len(spool.dead()), 2)
        self.assertEqual(spool.purge("dead"), 2)
        self.assertEqual(spool.busy(), 0)
        self.assertEqual(files(self.root), [])

    def test_requeue_one_and_all(self):
        one = put(self.spool, "u1")
        two = put(self.spool, "u2")
        self.spool.mark_done(one, "b")
        self.spool.mark_dead(one, "a", "r1")
        self.spool.mark_dead(two, "a", "r2")
        self.spool.mark_dead(two, "b", "r3")
        self.assertIsNone(self.spool.next_for("a"))
        self.assertEqual(self.spool.requeue(str(two)), 2)
        self.assertEqual(self.spool.next_for("a")[0], two)
        self.assertEqual(self.reboot().requeue("all"), 1)
        self.assertEqual(self.spool.next_for("a")[0], one)
        self.assertEqual(self.reboot().dead(), [])

    def test_purge_entry_and_all(self):
        one = put(self.spool, "u1")
        put(self.spool, "u2")
        self.assertEqual(self.spool.purge(one), 1)
        self.assertEqual(len(self.spool.list(10)), 1)
        self.assertEqual(self.spool.purge("all"), 1)
        self.assertEqual(files(self.root), [])


class TestRouting(SpoolTest):
    def test_rules_route_by_modality(self):
        rules = [{"dest": "ct", "modality": ["CT", "MR"]}, {"dest": "us", "modality": "US"}]
        spool = self.reboot(destinations=["ct", "us", "all"], routing=rules)
        one = put(spool, "u1", meta={"modality": "US"})
        two = put(spool, "u2", meta={"modality": "MR"})
        self.assertEqual(spool.next_for("us")[0], one)
        self.assertEqual(spool.next_for("ct")[0], two)
        self.assertEqual(spool.next_for("all")[0], one)
        spool.mark_done(one, "us")
        spool.mark_done(one, "all")
        self.assertEqual([e["id"] for e in spool.list(10)], [two])

    def test_unrouted_entry_waits_for_a_destination(self):
        spool = self.reboot(destinations=[])
        eid = put(spool, "u1", meta={"modality": "CT"})
        self.assertEqual(spool.list(1)[0]["pending"], [])
        spool = self.reboot(destinations=[])
        spool.set_destinations(["new"])
        self.assertEqual(spool.next_for("new")[0], eid)
        spool.mark_done(eid, "new")
        self.assertEqual(files(self.root), [])

    def test_removed_destination_keeps_its_entries_listed(self):
        eid = put(self.spool, "u1")
        self.spool.set_destinations(["a"])
        self.spool.mark_done(eid, "a")
        stats = self.spool.stats()
        self.assertEqual(stats["depth"], 1)
        self.assertFalse(stats["destinations"]["b"]["configured"])
        self.assertEqual(stats["destinations"]["b"]["pending"], 1)

    def test_log_lines_are_json(self):
        put(self.spool, "u1", meta={"modality": "CT", "iod": "ct-image"})
        with open(fs.join(self.root, "q/0000000001.m")) as f:
            first = json.loads(f.readline())
        self.assertEqual(first[0], "H")
        self.assertEqual(first[1]["meta"]["iod"], "ct-image")


if __name__ == "__main__":
    unittest.main()
