"""Nothing acknowledged lost, nothing duplicated, whatever flash operation fails or loses power.

A scripted session of single frames and series (frame protocol messages through the real
FrameReceiver, Acquirer, Spool and Forwarder) runs once for every operation N that changes the
flash (tests/unit/faultfs.py): once with operation N failing (OSError), once with the power going
at it (the device stops there and boots again on the same flash). After the session the device
boots once more, closes what is open and delivers. Then:
- every acknowledged frame is in exactly one object, the one its ACK named, once;
- no SOP Instance UID names two different objects; every object is well formed;
- no file is left behind, and the spool's byte count is what is on flash.
Every N on CPython; a sample of them on MicroPython (QEMU makes all of them take minutes).
"""

import binascii
import struct
import unittest

import dcmcheck
import faultfs
import support
from modgate.acquire import Acquirer
from modgate.compat import MICROPYTHON, ticks_add, ticks_ms
from modgate.dicom import uids
from modgate.dicom.dsreader import read_meta
from modgate.errors import ModgateError
from modgate.ingest import frameproto
from modgate.port import fs
from modgate.spool.forwarder import Forwarder
from modgate.spool.queue import ENTRY_OVERHEAD, Spool

WIDTH, HEIGHT = 8, 4
FRAME = WIDTH * HEIGHT  # GRAY8
# (kind, series_id, frame_index), or ("deliver",): what the modality sends, in order.
SCRIPT = (
    ("single", 0, 0),
    ("series_start", 11, 0), ("series_frame", 11, 1), ("series_end", 11, 2),
    ("deliver",),
    ("single", 0, 0),
    ("series_start", 12, 0), ("series_frame", 12, 1), ("bare_end", 12, 2),
    ("series_start", 13, 0), ("series_frame", 13, 1),  # left open: closed after the timeout
    ("single", 0, 0),
    ("deliver",),
)
SAMPLES_ON_MICROPYTHON = 60  # per kind of fault


def message(step, number):
    """The frame protocol message of script step `step` (the `number`th), and its payload."""
    kind, series_id, index = step
    bare = kind == "bare_end"
    payload = b"" if bare else (("F%03d" % number) * (FRAME // 4)).encode()
    buf = bytearray(frameproto.HEADER_SIZE)
    kind = "series_end" if bare else kind
    frameproto.encode_header(buf, kind, 1000 + number, series_id, index, WIDTH, HEIGHT, "GRAY8", 8, 0,
                             len(payload))
    body = bytes(buf) + payload
    return body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF), payload


def responses(out):
    """[(kind, reason, text)] of the responses in `out`."""
    found = []
    at = 0
    while at < len(out):
        _, _, kind, reason, _, _, length, _ = struct.unpack_from("<4sBBHIIHH", out, at)
        text = bytes(out[at + frameproto.RESPONSE_FIXED:at + frameproto.RESPONSE_FIXED + length]).decode()
        found.append((kind, reason, text))
        at += frameproto.RESPONSE_FIXED + length + 4
    return found


class Archive:
    """The destination: keeps every object it was sent, by SOP Instance UID."""

    def __init__(self):
        self.got = {}  # uid -> [bytes, ...] (different contents under one UID are a failure)
        self.sent_whole = True  # as StoreSession says after a store: it never fails midway here

    async def store(self, path):
        data = fs.read_bytes(path)
        with fs.open_file(path, "rb") as f:
            uid = read_meta(f)["sop_instance_uid"]
        seen = self.got.setdefault(uid, [])
        if data not in seen:
            seen.append(data)
        return 0, "success", "stored"

    async def release(self):
        pass

    def drop(self):
        pass

    def idle_expired(self):
        return False


class Board:
    """The device's storage side on `root`: booted (recovered) when made."""

    def __init__(self, root, archive, boot):
        settings = support.settings(Spool.SETTINGS, spool_budget_bytes=1 << 20)
        self.spool = Spool(fs.join(root, "spool"), settings, destinations=["archive"])
        self.spool.recover()
        uid_gen = uids.UidGenerator(None, "", boot)
        settings = support.settings(Acquirer.SETTINGS)
        self.sink = Acquirer(self.spool, uid_gen, support.Contexts(uid_gen), settings)
        self.sink.recover()
        self.receiver = frameproto.FrameReceiver(self.sink, "tcp:10.0.0.7:%d" % (40000 + boot))
        policy = {"base_backoff_ms": 1, "max_backoff_ms": 1, "jitter": 0}
        self.forwarder = Forwarder(self.spool, lambda name: archive, policy)

    def exchange(self, data):
        self.receiver.feed(bytearray(data), 0, len(data))
        out = responses(self.receiver.outbox)
        self.receiver.outbox[:] = b""
        return out

    def deliver(self, now):
        for _ in range(20):
            try:
                if not support.run(self.forwarder.attempt("archive", now)):
                    return
            except (ModgateError, OSError):
                pass  # the device loop logs it; what was not recorded is sent again
            now = ticks_add(now, 10)

    def shut_down(self):
        for series in list(self.sink.open_series.values()) + self.sink.closing:
            series.drop_writer()


class Session:
    """One run of SCRIPT with `plan` installed; the device reboots wherever the power goes."""

    def __init__(self, root, plan):
        self.root = root
        self.plan = plan
        self.archive = Archive()
        self.boots = 0
        self.board = self.boot()
        self.acked = []  # (payload, uid of its ACK)
        self.problems = []
        self.now = ticks_ms()

    def boot(self):
        self.boots += 1
        return Board(self.root, self.archive, self.boots)

    def power_cut(self):
        faultfs.uninstall()
        self.board.shut_down()
        self.board = self.boot()

    def run(self):
        faultfs.install(self.plan)
        try:
            number = 0
            for step in SCRIPT:
                number += 1
                if step[0] == "deliver":
                    self.guarded(lambda: self.board.deliver(self.now))
                else:
                    self.send(step, number)
                self.guarded(lambda: self.board.sink.tick(self.now))
        finally:
            faultfs.uninstall()
        self.board.shut_down()
        self.board = self.boot()
        later = ticks_add(self.now, 10 ** 7)  # past every series timeout
        self.board.sink.tick(later)
        self.board.sink.tick(ticks_add(later, 2000))  # and a retry of any failed close
        return self

    def guarded(self, work):
        try:
            work()
        except faultfs.PowerCut:
            self.power_cut()

    def send(self, step, number):
        data, payload = message(step, number)
        for _attempt in range(8):  # a modality keeps the frame until it is acknowledged
            try:
                answers = self.board.exchange(data)
            except faultfs.PowerCut:
                self.power_cut()
                continue
            for kind, reason, text in answers:
                if kind == frameproto.ACK:
                    if payload:
                        self.acked.append((payload, text))
                    return
                if kind == frameproto.BUSY or reason == frameproto.NAK_STORAGE:
                    continue
                self.problems.append("step %d: NAK %s %s" % (number, frameproto.NAK_NAMES[reason], text))
                return
            self.guarded(lambda: self.board.deliver(self.now))
        self.problems.append("step %d: never acknowledged" % number)

    def check(self):
        """The invariants (module docstring); a list of what broke."""
        problems = list(self.problems)
        spool = self.board.spool
        problems += leftovers(self.root, spool)
        if spool.used_bytes() != flash_bytes(spool):
            problems.append("spool counts %d bytes, flash holds %d" % (
                spool.used_bytes(), flash_bytes(spool)))
        objects = {}
        for entry in spool.list(100):
            data = fs.read_bytes(spool.data_path(entry["id"]))
            objects[entry["uid"]] = [data]
        self.board.deliver(self.now)
        if spool.stats()["depth"]:
            problems.append("%d entries not delivered" % spool.stats()["depth"])
        for uid in self.archive.got:
            seen = objects.setdefault(uid, [])
            for data in self.archive.got[uid]:
                if data not in seen:
                    seen.append(data)
        for uid in objects:
            if len(objects[uid]) > 1:
                problems.append("SOP Instance UID %s names %d different objects" % (uid, len(objects[uid])))
            for data in objects[uid]:
                try:
                    if dcmcheck.check(data, FRAME)[0] != uid:
                        problems.append("object %s carries another UID" % uid)
                except AssertionError as exc:
                    problems.append("object %s is malformed: %s" % (uid, exc))
        for payload, uid in self.acked:
            holders = [u for u in objects if any(payload in data for data in objects[u])]
            if holders != [uid]:
                problems.append("frame %s acknowledged as %s is in %s" % (payload[:4], uid, holders))
            elif objects[uid][0].count(payload) != 1:
                count = objects[uid][0].count(payload)
                problems.append("frame %s is %d times in %s" % (payload[:4], count, uid))
        if not self.acked:
            problems.append("nothing was acknowledged")
        return problems


def leftovers(root, spool):
    """Files the spool should not have left after a boot and the closing of every series."""
    out = []
    for name in fs.listdir(fs.join(root, "spool/in")):
        out.append("left behind: in/" + name)
    listed = [entry["id"] for entry in spool.list(100)]
    for name in fs.listdir(fs.join(root, "spool/q")):
        stem = name.split(".")[0]
        if not stem.isdigit() or int(stem) not in listed or name[len(stem):] not in (".dcm", ".m"):
            out.append("left behind: q/" + name)
    return out


def flash_bytes(spool):
    """What the spool's count must be: objects on flash, ENTRY_OVERHEAD per entry, open objects."""
    total = 0
    for entry in spool.list(100):
        total += fs.size(spool.data_path(entry["id"])) + ENTRY_OVERHEAD
    for name in fs.listdir(spool.indir):
        if name.endswith(".open"):
            total += fs.size(fs.join(spool.indir, name))
    return total


class TestEveryFault(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("faults")
        self.addCleanup(support.remove_tree, self.dir)
        self.addCleanup(faultfs.uninstall)
        self.runs = 0

    def run_once(self, plan):
        """(session, what broke) of one session on a fresh flash folder."""
        self.runs += 1
        root = fs.join(self.dir, str(self.runs))
        fs.makedirs(root)
        try:
            session = Session(root, plan).run()
            return session, session.check()
        finally:
            support.remove_tree(root)

    def every(self, total):
        if not MICROPYTHON:
            return range(1, total + 1)
        step = max(1, total // SAMPLES_ON_MICROPYTHON)
        return range(1 + total % step, total + 1, step)

    def run_all(self, make_plan):
        """Run the session with make_plan(n) for every operation n; the number of runs that hit."""
        counting = faultfs.Plan()
        self.assertEqual(self.run_once(counting)[1], [])
        total = counting.count
        self.assertGreater(total, 300)  # the script reaches every part of the spool
        failures = []
        hit = 0
        for n in self.every(total):
            plan = make_plan(n)
            problems = self.run_once(plan)[1]
            hit += plan.hit is not None
            if problems:
                failures.append("operation %d (%s): %s" % (n, plan.hit, "; ".join(problems[:3])))
        self.assertEqual(failures[:8], [], "%d of the runs failed" % len(failures))
        return hit

    def test_session_without_faults(self):
        session, problems = self.run_once(faultfs.Plan())
        self.assertEqual(problems, [])
        self.assertEqual(len(session.acked), 10)
        self.assertEqual(len({uid for _, uid in session.acked}), 6)  # 3 singles, 3 series
        self.assertEqual(session.boots, 2)

    def test_each_operation_failing_loses_and_duplicates_nothing(self):
        self.assertGreater(self.run_all(lambda n: faultfs.Plan(fail_at=n)), 0)

    def test_power_cut_at_each_operation_loses_and_duplicates_nothing(self):
        self.assertGreater(self.run_all(lambda n: faultfs.Plan(cut_at=n)), 0)


if __name__ == "__main__":
    unittest.main()
