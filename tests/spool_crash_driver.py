"""Drive the real acquisition, spool and forwarder on MicroPython so a test can SIGKILL it anywhere.

usage: micropython tests/spool_crash_driver.py ROOT ARCHIVE SEED START COUNT [drain|flaky]

A modality's script of COUNT objects (seeded; the same on every run of a trial): single frames,
and every fourth object a cine series of 2-5 frames, GRAY8. The driver boots (recovers the spool
and the series a kill left open), then sends the script from frame START on through the
Acquirer, as the frame protocol would (a frame not acknowledged is sent again by the next run:
the harness passes the first frame whose ACK it did not see), forwarding between frames to a
fake archive (a folder; one file per SOP Instance UID, written in place like a real archive).
One line per acknowledgement, printed once it is durable:
    ACK <frame number> <uid>     a single frame's object is committed
    FRAME <frame number> <uid>   a series frame is on flash, in the open object <uid>
"flaky": about one store in four breaks off after its first chunk (a partial file is left in the
archive, as a dropped association leaves one) and fails as transient, so retries run under kills.
"drain" sends nothing: it recovers, closes the open series (timeout 0), delivers everything, then
lists any file left under ROOT (LEFT <path>) and prints DRAINED.

tools/soak_spool.py imports this file for `script` and `payload` and checks the archive.
"""

# ruff: noqa: UP031 - runs on MicroPython, whose f-strings lack format specs; "%" is portable
import sys

from modgate import log
from modgate.dicom.dsreader import read_meta
from modgate.errors import DeliveryError, FrameError, SpoolFull
from modgate.port import aio, fs

CHUNK = 512
SERIES_EVERY = 4


class Rng:
    """A small LCG, identical on every runtime (the checker replays it)."""

    def __init__(self, seed):
        self.state = (seed * 2654435761 + 1) & 0x7FFFFFFF

    def below(self, n):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 8) % n


def script(seed, count):
    """The modality's frames: [(kind, series_id, frame_index, width, height)], frame n at [n]."""
    rng = Rng(seed)
    frames = []
    for i in range(count):
        if i % SERIES_EVERY == SERIES_EVERY - 1:
            length = 2 + rng.below(4)
            width, height = 20 + rng.below(40), 25 + rng.below(40)
            for k in range(length):
                kind = "series_start" if k == 0 else "series_end" if k == length - 1 else "series_frame"
                frames.append((kind, 100 + i, k, width, height))
        else:
            frames.append(("single", 0, 0, 10 + rng.below(60), 10 + rng.below(80)))
    return frames


def payload(seed, number, size):
    """Frame `number`'s pixels: text unique to it, repeated (a checker finds each frame by it)."""
    unit = ("<%d:%d>" % (seed, number)).encode()
    return (unit * (size // len(unit) + 1))[:size]


class Archive:
    """The fake archive: copies the object in chunks under its UID, as storescp writes a file."""

    def __init__(self, folder, rng=None):
        self.folder = folder
        self.rng = rng
        self.sent_whole = False  # as StoreSession: the data set went out whole (cut: it did not)

    async def store(self, path):
        self.sent_whole = False
        cut = self.rng is not None and self.rng.below(4) == 0
        with fs.open_file(path, "rb") as src:
            uid = read_meta(src)["sop_instance_uid"]
        buf = bytearray(CHUNK)
        with fs.open_file(path, "rb") as src:
            with fs.open_file(fs.join(self.folder, uid + ".dcm"), "wb") as dst:
                while True:
                    n = src.readinto(buf)
                    if not n:
                        break
                    dst.write(memoryview(buf)[:n])
                    if cut:
                        raise DeliveryError("association dropped mid-transfer", True)
        self.sent_whole = True
        return 0, "success", ""

    async def release(self):
        pass

    def drop(self):
        pass

    def idle_expired(self):
        return False


class Contexts:
    """The device's context provider, reduced to what the acquirer asks."""

    def __init__(self, uid_gen):
        self.study = uid_gen.new()

    def for_acquisition(self, header_context, source=""):
        # The facts a source states for its Secondary Capture objects (nothing is made up).
        return {"patient_name": "CRASH^TEST", "patient_id": "K1", "study_instance_uid": self.study,
                "now": (2026, 11, 27, 12, 0, 0), "modality": "XA", "conversion_type": "DI",
                "burned_in_annotation": "NO"}


def step(fwd):
    """One delivery attempt to the archive, as its worker task makes them; True if one was made."""
    return aio.run(fwd.attempt("archive"))


def boot(root, archive, flaky, drain):
    from modgate import config
    from modgate.acquire import Acquirer
    from modgate.dicom import uids
    from modgate.spool.forwarder import Forwarder
    from modgate.spool.queue import Spool

    settings = config.view(Spool.SETTINGS, {"spool_budget_bytes": 400000, "spool_high_pct": 80,
                                            "spool_low_pct": 50})
    spool = Spool(fs.join(root, "spool"), settings, destinations=["archive"])
    spool.recover()
    uid_gen = uids.UidGenerator(None, "", uids.next_boot_count(fs.join(root, "boot_count")))
    timeout = 0 if drain else 3600000
    acquirer = Acquirer(spool, uid_gen, Contexts(uid_gen), config.view(Acquirer.SETTINGS,
                                                                       {"series_timeout_ms": timeout}))
    acquirer.recover()
    policy = {"base_backoff_ms": 10, "max_backoff_ms": 200, "max_attempts": 0, "jitter": 0.5}
    return spool, acquirer, Forwarder(spool, lambda name: Archive(archive, flaky), policy)


def send(acquirer, fwd, seed, number, frame):
    """Frame `number` until the acquirer takes it (BUSY: deliver and try again)."""
    kind, series_id, index, width, height = frame
    # Each frame on a new connection (a new ephemeral port): series are keyed by the source's host.
    source = "tcp:127.0.0.1:%d" % (40000 + number)
    header = {"version": 1, "kind": kind, "sequence": number, "series_id": series_id, "frame_index": index,
              "width": width, "height": height, "pixel_format": "GRAY8", "bits_stored": 8,
              "payload_length": width * height, "context": None, "source": source}
    data = memoryview(payload(seed, number, width * height))
    while True:
        try:
            target = acquirer.begin_frame(header)
            for at in range(0, len(data), CHUNK):
                target.write(data[at:at + CHUNK])
            return acquirer.commit_frame(target)
        except SpoolFull:
            step(fwd)  # the source was told BUSY and waits; nothing accepted is dropped
            acquirer.tick()


def leftovers(root):
    out = []
    for sub in ("spool/in", "spool/q"):
        for name in fs.listdir(fs.join(root, sub)):
            out.append(sub + "/" + name)
    return out


def main(argv):
    root, archive, seed, start, count = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    mode = argv[5] if len(argv) > 5 else ""
    drain = mode == "drain"
    log.configure(level="error")
    fs.makedirs(archive)
    flaky = Rng(seed * 1000 + start + 1) if mode == "flaky" else None
    spool, acquirer, fwd = boot(root, archive, flaky, drain)
    rng = Rng(seed * 1000 + start)
    if not drain:
        frames = script(seed, count)
        for number in range(start, len(frames)):
            try:
                uid = send(acquirer, fwd, seed, number, frames[number])
            except FrameError as exc:
                print("NAK %d %s" % (number, exc))
                return 1
            print("%s %d %s" % ("ACK" if frames[number][0] == "single" else "FRAME", number, uid))
            for _ in range(rng.below(3)):
                step(fwd)
            acquirer.tick()
    acquirer.tick()
    while step(fwd) or fwd.due_ms("archive") is not None:
        acquirer.tick()
    if drain:
        for path in leftovers(root):
            print("LEFT " + path)
        print("DRAINED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
