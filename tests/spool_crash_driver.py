"""Drive the real Spool and Forwarder on MicroPython so a test can SIGKILL it at any moment.

usage: micropython tests/spool_crash_driver.py ROOT ARCHIVE SEED RUN COUNT [drain|flaky]

Acquires COUNT objects (single-frame, and every fourth a multi-frame object kept open across
frames), committing each through the spool and forwarding between acquisitions to a fake
archive (a folder; one file per SOP Instance UID, written in place like a real archive would).
Prints one line per acknowledgement, after it became durable:
    FRAME <uid> <n> <frame bytes>          frame n (1-based) of an open object is on flash
    ACK <uid> <frames> <frame bytes>       the object is committed
"flaky": about one store in four breaks off after its first chunk (a partial file is left in the archive, as a
dropped association leaves one) and fails as transient, so retries and backoff run under the kills.
"drain" acquires nothing: it recovers, finalises open objects and delivers everything, then lists
any file left under ROOT (LEFT <path>) and prints DRAINED.

Object format (the spool does not care; the checker rebuilds the expected bytes from it):
    b"UID=<uid>\\nFRAMES=%08d\\n" followed by FRAMES frames; frame k is (uid + "#k|") repeated.
"""

# ruff: noqa: UP031 - runs on MicroPython, whose f-strings lack format specs; "%" is portable
import sys

from modgate.errors import DeliveryError
from modgate.port import aio, fs
from modgate.spool.forwarder import Forwarder
from modgate.spool.queue import Spool

CHUNK = 512


class Rng:
    """A small LCG, identical on every runtime (the checker does not need it)."""

    def __init__(self, seed):
        self.state = (seed * 2654435761 + 1) & 0x7FFFFFFF

    def below(self, n):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 8) % n


def header(uid, frames):
    return ("UID=" + uid + "\nFRAMES=%08d\n" % frames).encode()


def frame(uid, k, size):
    unit = (uid + "#" + str(k) + "|").encode()
    reps = size // len(unit) + 1
    return (unit * reps)[:size]


class Session:
    """The fake archive: copies the object in chunks under its UID, as storescp writes a file."""

    def __init__(self, archive, rng=None):
        self.archive = archive
        self.rng = rng

    async def store(self, path):
        cut = self.rng is not None and self.rng.below(4) == 0
        buf = bytearray(CHUNK)
        with fs.open_file(path, "rb") as src:
            uid = src.readline().decode().strip()[4:]
            src.seek(0)
            with fs.open_file(fs.join(self.archive, uid + ".dcm"), "wb") as dst:
                while True:
                    n = src.readinto(buf)
                    if not n:
                        break
                    dst.write(memoryview(buf)[:n])
                    if cut:
                        raise DeliveryError("association dropped mid-transfer", True)
        return 0, "success", ""

    async def release(self):
        pass

    def drop(self):
        pass

    def idle_expired(self):
        return False


def step(fwd):
    """One delivery attempt to the archive, as its worker task makes them; True if one was made."""
    return aio.run(fwd.attempt("archive"))

    def idle_expired(self):
        return False


def finalise(spool):
    """What the acquisition layer does at boot: keep whole acknowledged frames, fix the count."""
    for inc in spool.open_objects():
        note = inc.open_meta
        hdr = note["hdr"]
        frames = (inc.size() - hdr) // note["frame"]
        if frames == 0:
            spool.abort(inc)  # no frame was ever acknowledged
            continue
        spool.truncate(inc, hdr + frames * note["frame"])
        with fs.open_file(inc.path, "r+b") as f:
            f.write(header(note["uid"], frames))
        spool.commit(inc, note["uid"], {"modality": "XA", "series_uid": note["uid"]})
        print("FINAL " + note["uid"] + " " + str(frames))


def acquire_single(spool, uid, size):
    inc = spool.begin(expected_bytes=size + 64)
    with fs.open_file(inc.path, "wb") as f:
        f.write(header(uid, 1))
        f.write(frame(uid, 0, size))
    spool.commit(inc, uid, {"modality": "OT", "series_uid": "s"})
    print("ACK %s 1 %d" % (uid, size))


def acquire_multi(spool, fwd, uid, frames, size):
    hdr = len(header(uid, 0))
    inc = spool.begin(open_meta={"uid": uid, "hdr": hdr, "frame": size})
    with fs.open_file(inc.path, "wb") as f:
        f.write(header(uid, 0))
        for k in range(frames):
            f.write(frame(uid, k, size))
            spool.checkpoint(inc, f)
            print("FRAME %s %d %d" % (uid, k + 1, size))
            step(fwd)
        f.seek(0)
        f.write(header(uid, frames))
    spool.commit(inc, uid, {"modality": "XA", "series_uid": uid})
    print("ACK %s %d %d" % (uid, frames, size))


def leftovers(root):
    out = []
    for sub in ("in", "q"):
        for name in fs.listdir(fs.join(root, sub)):
            out.append(sub + "/" + name)
    return out


def main(argv):
    root, archive, seed, run, count = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    mode = argv[5] if len(argv) > 5 else ""
    drain = mode == "drain"
    fs.makedirs(archive)
    spool = Spool(root, 400000, high_pct=80, low_pct=50, destinations=["archive"])
    spool.recover()
    rng = Rng(seed * 1000 + run)
    flaky = Rng(seed * 1000 + run + 1) if mode == "flaky" else None
    policy = {"base_backoff_ms": 10, "max_backoff_ms": 200, "max_attempts": 0, "jitter": 0.5}
    fwd = Forwarder(spool, lambda name: Session(archive, flaky), policy)
    finalise(spool)
    if not drain:
        for i in range(count):
            while spool.busy():  # the source is told BUSY and waits; nothing accepted is dropped
                step(fwd)
            uid = "1.2.826.0.1.%d.%d.%d" % (seed, run, i)
            if i % 4 == 3:
                acquire_multi(spool, fwd, uid, 2 + rng.below(4), 1000 + rng.below(3000))
            else:
                acquire_single(spool, uid, 100 + rng.below(20000))
            for _ in range(rng.below(3)):
                step(fwd)
    while step(fwd) or fwd.due_ms("archive") is not None:
        pass
    if drain:
        for path in leftovers(root):
            print("LEFT " + path)
        print("DRAINED")
    return 0


sys.exit(main(sys.argv[1:]))
