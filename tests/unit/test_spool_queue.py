"""The queue on flash: commit, recovery from every crash point, capacity, dead letters, routing."""

import json
import unittest

import support
from modgate.errors import SpoolFull
from modgate.port import fs
from modgate.spool import entrylog
from modgate.spool.queue import ENTRY_OVERHEAD, Spool


class Clock:
    def __init__(self):
        self.ms = 1000
        self.s = 1800000000

    def ticks(self):
        return self.ms

    def seconds(self):
        return self.s


def make(root, clock, **kw):
    args = {"budget_bytes": 1000000, "destinations": ["a", "b"], "ticks": clock.ticks,
            "seconds": clock.seconds}
    args.update(kw)
    spool = Spool(root, **args)
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


class TestOpenObjects(SpoolTest):
    def test_open_object_survives_and_is_finalised_by_the_caller(self):
        inc = self.spool.begin(open_meta={"uid": "mf", "frame": 4})
        with open(inc.path, "wb") as f:
            f.write(b"HDR")
            for i in range(3):
                f.write(bytes([65 + i]) * 4)
                self.spool.checkpoint(inc, f)
            f.write(b"zz")  # a partial frame, never acknowledged
        spool = self.reboot()
        found = spool.open_objects()
        self.assertEqual(len(found), 1)
        got = found[0]
        self.assertEqual(got.open_meta, {"uid": "mf", "frame": 4})
        self.assertEqual(got.size(), 17)
        spool.truncate(got, 3 + 3 * 4)
        eid = spool.commit(got, "mf", {"modality": "XA"})
        self.assertEqual(fs.read_bytes(spool.data_path(eid)), b"HDRAAAABBBBCCCC")
        self.assertEqual(spool.open_objects(), [])
        self.assertEqual(files(self.root), ["q/0000000001.dcm", "q/0000000001.m"])
        self.assertEqual(self.reboot().open_objects(), [])

    def test_plain_incoming_is_not_an_open_object(self):
        self.spool.begin()
        self.assertEqual(self.reboot().open_objects(), [])

    def test_open_numbers_do_not_collide_after_restart(self):
        first = self.spool.begin(open_meta={})
        spool = self.reboot()
        second = spool.begin(open_meta={})
        self.assertNotEqual(first.path, second.path)
        spool.abort(spool.open_objects()[0])
        self.assertEqual(files(self.root), ["in/o2.json", "in/o2.open"])


class TestCapacity(SpoolTest):
    def test_busy_from_high_until_low_watermark(self):
        spool = self.reboot(budget_bytes=10 * (100 + ENTRY_OVERHEAD), high_pct=50, low_pct=20)
        ids = []
        for i in range(4):
            ids.append(put(spool, "u%d" % i, b"x" * 100))
            self.assertEqual(spool.busy(), 0)
        ids.append(put(spool, "u4", b"x" * 100))
        self.assertEqual(spool.busy(), 1000)
        self.assertTrue(spool.stats()["busy"])
        for eid in ids[:2]:
            spool.mark_done(eid, "a")
            spool.mark_done(eid, "b")
        self.assertEqual(spool.busy(), 1000)  # 3 of 10 left: above the low mark
        spool.mark_done(ids[2], "a")
        spool.mark_done(ids[2], "b")
        self.assertEqual(spool.busy(), 0)

    def test_open_object_growth_counts(self):
        spool = self.reboot(budget_bytes=1000, high_pct=50, low_pct=10)
        inc = spool.begin(open_meta={})
        with open(inc.path, "wb") as f:
            f.write(b"x" * 600)
        self.assertEqual(spool.busy(), 1000)

    def test_object_larger_than_the_budget_is_refused_before_writing(self):
        spool = self.reboot(budget_bytes=1000)
        with self.assertRaises(SpoolFull):
            spool.begin(expected_bytes=2000)
        self.assertEqual(files(self.root), [])

    def test_entry_table_limit_makes_busy(self):
        spool = self.reboot(max_items=2)
        put(spool, "u1")
        self.assertEqual(spool.busy(), 0)
        put(spool, "u2")
        self.assertEqual(spool.busy(), 1000)


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
